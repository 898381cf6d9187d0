import { readFileSync } from "node:fs";
import { WORKER_REPLY_PREFIXES } from "@arbiter/embedded-nats";
import type { HostPolicyClient } from "@arbiter/host";
import { resourceNames, WorkerStatusV1 } from "@arbiter/protocol";
import { type ArbiterStore, createRulesAdmin, openJetStreamStore, type RulesAdmin } from "@arbiter/store";
import { createSigner, generateKey } from "@arbiter/trust";
import type { NatsConnection } from "@nats-io/nats-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectTo, type NatsServerProcess, startNatsServer, until } from "./harness/index.js";
import { type RunningArbiter, spawnArbiter } from "./support/cli.js";
import {
  applyRules,
  componentBody,
  defaultRules,
  expectEachOverrideRecorded,
  startHost,
  untilIndexCaughtUp,
  untilPartsPulled,
  untilRevisionReevaluated,
} from "./support/fanout.js";
import { TEST_PASSWORDS } from "./support/permission-attacks.js";

// Three `arbiter worker` processes under the shipped permissions, with parts of 200 entries: a
// revision over 600 cached decisions is split into 3 parts that the workers share.

const ACCOUNTS = readFileSync(new URL("../deploy/nats/accounts.conf", import.meta.url), "utf8");
const HOSTS = 10;
const PER_HOST = 60;
const PART_SIZE = 200;

let server: NatsServerProcess;
let adminNc: NatsConnection;
let store: ArbiterStore;
let admin: RulesAdmin;
const workers: RunningArbiter[] = [];
const hosts: HostPolicyClient[] = [];
const connections: NatsConnection[] = [];

/** Each live worker's status counters, by worker id. */
async function workerStats(): Promise<Map<string, Record<string, number>>> {
  const out = new Map<string, Record<string, number>>();
  const inbox = `_INBOX_arbiter_admin.split-status.${generateKey("N").publicKey}`;
  const sub = adminNc.subscribe(inbox);
  adminNc.publish(resourceNames().statusSubject, new Uint8Array(), { reply: inbox });
  const live = workers.filter((w) => w.child.exitCode === null && w.child.signalCode === null).length;
  for await (const m of sub) {
    const status = WorkerStatusV1.parse(m.json());
    out.set(status.id, status.stats);
    if (out.size === live) break;
  }
  return out;
}

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
  server = await startNatsServer({ extraConfig: ACCOUNTS, env: { ...TEST_PASSWORDS } });
  adminNc = await connectTo(server.url, {
    user: "arbiter-admin",
    pass: TEST_PASSWORDS["ARBITER_ADMIN_PASSWORD"],
    inboxPrefix: "_INBOX_arbiter_admin",
  });
  connections.push(adminNc);
  store = await openJetStreamStore(adminNc, { revocationAckWaitMs: 2000 });
  const signer = createSigner(generateKey("O").seed);
  admin = createRulesAdmin({ store, signer });
  await applyRules(admin, defaultRules("deny"));
  const keys = [generateKey("N"), generateKey("N"), generateKey("N")];
  for (const [i, key] of keys.entries()) {
    workers.push(
      spawnArbiter(["worker", "--name", `split-${i}`], {
        NATS_URL: server.url,
        NATS_USER: "arbiter-worker",
        NATS_PASSWORD: TEST_PASSWORDS["ARBITER_WORKER_PASSWORD"] ?? "",
        ARBITER_INBOX_PREFIXES: WORKER_REPLY_PREFIXES.join(","),
        ARBITER_ADMIN_KEYS: signer.publicKey,
        ARBITER_WORKER_SEED: key.seed,
        ARBITER_WORKER_KEYS: keys.map((k) => k.publicKey).join(","),
        ARBITER_SCAN_PART_SIZE: String(PART_SIZE),
        ARBITER_LOG_LEVEL: "info",
      }),
    );
  }
  for (const worker of workers) {
    await until(() => /worker ready/.test(worker.stdout() + worker.stderr()), {
      name: "worker ready",
      timeout: 30_000,
    });
  }
  for (let h = 0; h < HOSTS; h++) {
    const hostNc = await connectTo(server.url, {
      user: "wasmcloud-host",
      pass: TEST_PASSWORDS["WASMCLOUD_HOST_PASSWORD"],
    });
    connections.push(hostNc);
    hosts.push(await startHost(hostNc));
  }
  await Promise.all(
    hosts.map(async (host, h) => {
      for (let i = 0; i < PER_HOST; i++) await host.evaluateStartComponent(componentBody(`h${h}-c${i}`));
    }),
  );
  await untilIndexCaughtUp(adminNc);
  // A taker splits only among workers waiting for parts.
  await untilPartsPulled(adminNc, workers.length);
}, 120_000);

afterAll(async () => {
  for (const host of hosts) await host.stop();
  for (const worker of workers) await worker.stop();
  for (const c of connections) await c.close();
  await store?.close();
  await server?.stop();
});

/** Checks that every cached decision's override of `revision` is recorded (see expectEachOverrideRecorded). */
async function expectRecorded(revision: number): Promise<void> {
  await expectEachOverrideRecorded(
    adminNc,
    revision,
    hosts.flatMap((host) => host.sentRequestIds()),
  );
}

describe("a large re-evaluation split across workers", () => {
  it("every part is done, by more than one worker, and every override recorded once (sent and recorded again only with a part delivered again)", async () => {
    const revision = await applyRules(admin, defaultRules("allow"));
    await untilRevisionReevaluated(adminNc, revision, 60_000);
    await until(
      () => hosts.every((host) => [...host.cacheEntries().values()].every((entry) => entry.permitted)),
      { name: "every cached denial permitted", timeout: 30_000, interval: 50 },
    );
    const stats = [...(await workerStats()).values()];
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
    const revision = await applyRules(admin, defaultRules("deny"));
    const holder = await until(() => workers.findIndex((w) => partsTaken(w, revision) > 0) + 1, {
      name: "a worker re-evaluating a part",
      timeout: 30_000,
    }).then((found) => workers[found - 1]!);
    holder.child.kill("SIGKILL");
    await until(() => holder.child.signalCode === "SIGKILL", { name: "the part holder gone" });
    await untilRevisionReevaluated(adminNc, revision, 60_000);
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
