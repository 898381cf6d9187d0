import { readFileSync } from "node:fs";
import { WORKER_REPLY_PREFIXES } from "@arbiter/embedded-nats";
import type { HostPolicyClient } from "@arbiter/host";
import { resourceNames, WorkerStatusV1 } from "@arbiter/protocol";
import { type ArbiterStore, createRulesAdmin, openJetStreamStore, type RulesAdmin } from "@arbiter/store";
import { createSigner, generateKey } from "@arbiter/trust";
import { jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectTo, type NatsServerProcess, startNatsServer, until } from "./harness/index.js";
import { type RunningArbiter, spawnArbiter } from "./support/cli.js";
import {
  applyRules,
  componentBody,
  defaultRules,
  startHost,
  untilIndexCaughtUp,
  untilPartsPulled,
  untilRevisionReevaluated,
} from "./support/fanout.js";
import { TEST_PASSWORDS } from "./support/permission-attacks.js";

// Parts of 200 entries over 600 cached decisions: a split pays only when another worker takes
// parts. One `arbiter worker` first (it scans alone), then two more (the revision is split).

const ACCOUNTS = readFileSync(new URL("../deploy/nats/accounts.conf", import.meta.url), "utf8");
const HOSTS = 10;
const PER_HOST = 60;
const PART_SIZE = 200;
const KEYS = [generateKey("N"), generateKey("N"), generateKey("N")];

let server: NatsServerProcess;
let adminNc: NatsConnection;
let store: ArbiterStore;
let admin: RulesAdmin;
let adminKey: string;
const workers: RunningArbiter[] = [];
const hosts: HostPolicyClient[] = [];
const connections: NatsConnection[] = [];

async function startWorker(i: number): Promise<RunningArbiter> {
  const worker = spawnArbiter(["worker", "--name", `split-pays-${i}`], {
    NATS_URL: server.url,
    NATS_USER: "arbiter-worker",
    NATS_PASSWORD: TEST_PASSWORDS["ARBITER_WORKER_PASSWORD"] ?? "",
    ARBITER_INBOX_PREFIXES: WORKER_REPLY_PREFIXES.join(","),
    ARBITER_ADMIN_KEYS: adminKey,
    ARBITER_WORKER_SEED: KEYS[i]!.seed,
    ARBITER_WORKER_KEYS: KEYS.map((k) => k.publicKey).join(","),
    ARBITER_SCAN_PART_SIZE: String(PART_SIZE),
    ARBITER_LOG_LEVEL: "info",
  });
  workers.push(worker);
  await until(() => /worker ready/.test(worker.stdout() + worker.stderr()), {
    name: `worker ${i} ready`,
    timeout: 30_000,
  });
  return worker;
}

/** Parts published for `revision` in the scans stream. */
async function partsPublished(revision: number): Promise<number> {
  const names = resourceNames();
  const jsm = await jetstreamManager(adminNc);
  const info = await jsm.streams.info(names.scansStream, {
    subjects_filter: `arbiter.scans.part.${revision}.*`,
  });
  return Object.keys(info.state.subjects ?? {}).length;
}

/** Each live worker's status counters. */
async function workerStats(): Promise<Record<string, number>[]> {
  const out: Record<string, number>[] = [];
  const inbox = `_INBOX_arbiter_admin.split-pays-status.${generateKey("N").publicKey}`;
  const sub = adminNc.subscribe(inbox);
  adminNc.publish(resourceNames().statusSubject, new Uint8Array(), { reply: inbox });
  for await (const m of sub) {
    out.push(WorkerStatusV1.parse(m.json()).stats);
    if (out.length === workers.length) break;
  }
  return out;
}

function allCached(permitted: boolean): boolean {
  return hosts.every((host) => [...host.cacheEntries().values()].every((e) => e.permitted === permitted));
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
  adminKey = signer.publicKey;
  admin = createRulesAdmin({ store, signer });
  await applyRules(admin, defaultRules("deny"));
  await startWorker(0);
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
}, 120_000);

afterAll(async () => {
  for (const host of hosts) await host.stop();
  for (const worker of workers) await worker.stop();
  for (const c of connections) await c.close();
  await store?.close();
  await server?.stop();
});

describe("a large re-evaluation is split only when another worker takes parts", () => {
  it("one worker scans an index larger than a part alone: no part published, every override sent", async () => {
    await untilPartsPulled(adminNc, 1);
    const revision = await applyRules(admin, defaultRules("allow"));
    await untilRevisionReevaluated(adminNc, revision, 60_000);
    await until(() => allCached(true), { name: "every cached denial permitted", timeout: 30_000 });
    expect(await partsPublished(revision)).toBe(0);
    const [stats] = await workerStats();
    expect(stats?.["fanoutRevisionsSplit"]).toBe(0);
    expect(stats?.["fanoutPartsDone"]).toBe(0);
    expect(stats?.["fanoutOverrides"]).toBe(HOSTS * PER_HOST);
    expect(workers[0]!.stdout() + workers[0]!.stderr()).toContain("no other worker takes parts");
  }, 120_000);

  it("with three workers the same index is split, its parts done by more than one", async () => {
    await startWorker(1);
    await startWorker(2);
    await untilPartsPulled(adminNc, 3);
    const revision = await applyRules(admin, defaultRules("deny"));
    await untilRevisionReevaluated(adminNc, revision, 60_000);
    await until(() => allCached(false), { name: "every cached permission revoked", timeout: 30_000 });
    expect(await partsPublished(revision)).toBe((HOSTS * PER_HOST) / PART_SIZE);
    const stats = await workerStats();
    expect(stats.reduce((sum, s) => sum + (s["fanoutRevisionsSplit"] ?? 0), 0)).toBe(1);
    expect(stats.filter((s) => (s["fanoutPartsDone"] ?? 0) > 0).length).toBeGreaterThan(1);
  }, 120_000);
});
