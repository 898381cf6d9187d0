import type { HostPolicyClient } from "@arbiter/host";
import { generateKey } from "@arbiter/trust";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { until } from "./harness/index.js";
import type { RunningArbiter } from "./support/cli.js";
import {
  applyRules,
  defaultRules,
  expectEachOverrideRecorded,
  untilRevisionReevaluated,
} from "./support/fanout.js";
import { type FanoutArbiter, startFanoutArbiter } from "./support/fanout-setup.js";

// Two `arbiter worker` processes; the one re-evaluating a rules revision is killed with SIGKILL
// once its first overrides are out. The other takes the revision over and every override is sent.

const HOSTS = 10;
const PER_HOST = 60;

let arbiter: FanoutArbiter;
const workers: RunningArbiter[] = [];

beforeAll(async () => {
  arbiter = await startFanoutArbiter({ workers: [], storeOptions: { revocationAckWaitMs: 2000 } });
  const keys = [generateKey("N"), generateKey("N")];
  const workerKeys = keys.map((k) => k.publicKey).join(",");
  for (const [i, key] of keys.entries()) {
    workers.push(
      await arbiter.spawnWorker(`w${i}`, { seed: key.seed, env: { ARBITER_WORKER_KEYS: workerKeys } }),
    );
  }
}, 60_000);

afterAll(async () => {
  await arbiter?.close();
});

describe("re-evaluation when the worker doing it dies", () => {
  it("kill -9 of the worker re-evaluating a revision still ends with every override sent", async () => {
    const { nc, admin } = arbiter;
    const hosts: HostPolicyClient[] = await arbiter.startCachingHosts(HOSTS, PER_HOST);
    const first = new Promise<void>((resolve) => {
      nc.subscribe("wasmcloud.policy.changes", { max: 1, callback: () => resolve() });
    });
    await nc.flush();
    const revision = await applyRules(admin, defaultRules("allow"));
    await first;
    const scans = (w: RunningArbiter, delivery: number) =>
      (w.stdout() + w.stderr())
        .split("\n")
        .some(
          (line) =>
            line.includes("re-evaluating the active index") &&
            line.includes(`"revision":${revision},"delivery":${delivery}`),
        );
    // Its log line may come through its stderr pipe after the override came through NATS.
    const scanning = await until(() => workers.findIndex((w) => scans(w, 1)) + 1, {
      name: "the worker re-evaluating the revision",
    }).then((found) => found - 1);
    const killed = workers[scanning]!;
    const survivor = workers[1 - scanning]!;
    killed.child.kill("SIGKILL");
    await until(() => killed.child.signalCode === "SIGKILL", { name: "the re-evaluating worker gone" });
    await untilRevisionReevaluated(nc, revision, 60_000);
    await until(
      () => hosts.every((host) => [...host.cacheEntries().values()].every((entry) => entry.permitted)),
      { name: "every cached denial permitted", timeout: 30_000, interval: 50 },
    );
    // The survivor got the revision again, after the ack wait.
    expect(scans(survivor, 2)).toBe(true);
    for (const host of hosts) expect(host.cacheEntries().size).toBe(PER_HOST);
    // The chunks the killed worker had written are not recorded again by the survivor's redone
    // scan, unless it cut them otherwise: then an override is there twice, saying the same.
    await expectEachOverrideRecorded(
      nc,
      revision,
      hosts.flatMap((host) => host.sentRequestIds()),
    );
  }, 120_000);
});
