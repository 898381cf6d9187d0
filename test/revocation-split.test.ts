import type { HostPolicyClient } from "@arbiter/host";
import { generateKey } from "@arbiter/trust";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { until } from "./harness/index.js";
import type { RunningArbiter } from "./support/cli.js";
import {
  applyRules,
  defaultRules,
  expectEachOverrideRecorded,
  untilIndexCaughtUp,
  untilPartsPulled,
  untilRevisionReevaluated,
} from "./support/fanout.js";
import { type FanoutArbiter, startFanoutArbiter } from "./support/fanout-setup.js";

// Three `arbiter worker` processes under the shipped permissions, with parts of 200 entries: a
// revision over 600 cached decisions is split into 3 parts that the workers share.

const HOSTS = 10;
const PER_HOST = 60;
const PART_SIZE = 200;

let arbiter: FanoutArbiter;
const workers: RunningArbiter[] = [];
let hosts: HostPolicyClient[] = [];

function partsTaken(worker: RunningArbiter, revision: number, delivery?: number): number {
  return (worker.stdout() + worker.stderr())
    .split("\n")
    .filter(
      (line) =>
        line.includes("re-evaluating a part of a rules revision") &&
        line.includes(`"revision":${revision},`) &&
        (delivery === undefined || line.includes(`"delivery":${delivery}`)),
    ).length;
}

beforeAll(async () => {
  arbiter = await startFanoutArbiter({
    shippedPermissions: true,
    workers: [],
    storeOptions: { revocationAckWaitMs: 2000 },
  });
  const keys = [generateKey("N"), generateKey("N"), generateKey("N")];
  const env = {
    ARBITER_WORKER_KEYS: keys.map((k) => k.publicKey).join(","),
    ARBITER_SCAN_PART_SIZE: String(PART_SIZE),
  };
  for (const [i, key] of keys.entries()) {
    workers.push(await arbiter.spawnWorker(`split-${i}`, { seed: key.seed, env }));
  }
  hosts = await arbiter.startCachingHosts(HOSTS, PER_HOST);
  await untilIndexCaughtUp(arbiter.nc);
  // A taker splits only among workers waiting for parts.
  await untilPartsPulled(arbiter.nc, workers.length);
}, 120_000);

afterAll(async () => {
  await arbiter?.close();
});

/** Checks that every cached decision's override of `revision` is recorded (see expectEachOverrideRecorded). */
async function expectRecorded(revision: number): Promise<void> {
  await expectEachOverrideRecorded(
    arbiter.nc,
    revision,
    hosts.flatMap((host) => host.sentRequestIds()),
  );
}

describe("a large re-evaluation split across workers", () => {
  it("every part is done, by more than one worker, and every override recorded once (sent and recorded again only with a part delivered again)", async () => {
    const revision = await applyRules(arbiter.admin, defaultRules("allow"));
    await untilRevisionReevaluated(arbiter.nc, revision, 60_000);
    await until(
      () => hosts.every((host) => [...host.cacheEntries().values()].every((entry) => entry.permitted)),
      { name: "every cached denial permitted", timeout: 30_000, interval: 50 },
    );
    const stats = [...(await arbiter.workerStats(3)).values()];
    expect(stats).toHaveLength(3);
    const parts = stats.map((s) => s["fanoutPartsDone"] ?? 0);
    // A part is done again only when the server delivered it again (its holder's in-progress acks
    // late on a starved machine); what it sends again a host applies the same way, and its
    // revocation records are de-duplicated unless it cut its chunks otherwise.
    const again = workers.reduce((sum, w) => sum + partsTaken(w, revision) - partsTaken(w, revision, 1), 0);
    const partCount = (HOSTS * PER_HOST) / PART_SIZE;
    expect(parts.reduce((a, b) => a + b, 0)).toBe(partCount + again);
    expect(parts.filter((n) => n > 0).length).toBeGreaterThan(1);
    expect(stats.reduce((sum, s) => sum + (s["fanoutRevisionsSplit"] ?? 0), 0)).toBe(1);
    expect(stats.reduce((sum, s) => sum + (s["fanoutOverrides"] ?? 0), 0)).toBe(
      HOSTS * PER_HOST + again * PART_SIZE,
    );
    await expectRecorded(revision);
  }, 120_000);

  it("kill -9 of a worker holding a part still ends with every override sent, each recorded (twice only where the part was redone in other chunks)", async () => {
    const revision = await applyRules(arbiter.admin, defaultRules("deny"));
    const holder = await until(() => workers.findIndex((w) => partsTaken(w, revision) > 0) + 1, {
      name: "a worker re-evaluating a part",
      timeout: 30_000,
    }).then((found) => workers[found - 1]!);
    holder.child.kill("SIGKILL");
    await until(() => holder.child.signalCode === "SIGKILL", { name: "the part holder gone" });
    await untilRevisionReevaluated(arbiter.nc, revision, 60_000);
    await until(
      () => hosts.every((host) => [...host.cacheEntries().values()].every((entry) => !entry.permitted)),
      { name: "every cached permission revoked", timeout: 30_000, interval: 50 },
    );
    for (const host of hosts) expect(host.cacheEntries().size).toBe(PER_HOST);
    // The part it held went to another worker after the ack wait (parts it had done stay done).
    const survivors = workers.filter((w) => w !== holder);
    expect(survivors.some((w) => partsTaken(w, revision, 2) > 0)).toBe(true);
    // A part redone after its holder died records nothing twice, unless it cut its chunks otherwise.
    await expectRecorded(revision);
  }, 120_000);
});
