import type { HostPolicyClient } from "@arbiter/host";
import { resourceNames } from "@arbiter/protocol";
import { generateKey } from "@arbiter/trust";
import { jetstreamManager } from "@nats-io/jetstream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { until } from "./harness/index.js";
import type { RunningArbiter } from "./support/cli.js";
import {
  applyRules,
  defaultRules,
  untilIndexCaughtUp,
  untilPartsPulled,
  untilRevisionReevaluated,
} from "./support/fanout.js";
import { type FanoutArbiter, startFanoutArbiter } from "./support/fanout-setup.js";

// Parts of 200 entries over 600 cached decisions: a split pays only when another worker takes
// parts. One `arbiter worker` first (it scans alone), then two more (the revision is split).

const HOSTS = 10;
const PER_HOST = 60;
const PART_SIZE = 200;
const KEYS = [generateKey("N"), generateKey("N"), generateKey("N")];

let arbiter: FanoutArbiter;
let adminNc: FanoutArbiter["nc"];
const workers: RunningArbiter[] = [];
let hosts: HostPolicyClient[] = [];

async function startWorker(i: number): Promise<RunningArbiter> {
  const worker = await arbiter.spawnWorker(`split-pays-${i}`, {
    seed: KEYS[i]!.seed,
    env: {
      ARBITER_WORKER_KEYS: KEYS.map((k) => k.publicKey).join(","),
      ARBITER_SCAN_PART_SIZE: String(PART_SIZE),
    },
  });
  workers.push(worker);
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
  return [...(await arbiter.workerStats(workers.length)).values()];
}

function allCached(permitted: boolean): boolean {
  return hosts.every((host) => [...host.cacheEntries().values()].every((e) => e.permitted === permitted));
}

beforeAll(async () => {
  arbiter = await startFanoutArbiter({
    shippedPermissions: true,
    workers: [],
    storeOptions: { revocationAckWaitMs: 2000 },
  });
  adminNc = arbiter.nc;
  await startWorker(0);
  hosts = await arbiter.startCachingHosts(HOSTS, PER_HOST);
  await untilIndexCaughtUp(adminNc);
}, 120_000);

afterAll(async () => {
  await arbiter?.close();
});

describe("a large re-evaluation is split only when another worker takes parts", () => {
  it("one worker scans an index larger than a part alone: no part published, every override sent", async () => {
    await untilPartsPulled(adminNc, 1);
    const revision = await applyRules(arbiter.admin, defaultRules("allow"));
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
    const revision = await applyRules(arbiter.admin, defaultRules("deny"));
    await untilRevisionReevaluated(adminNc, revision, 60_000);
    await until(() => allCached(false), { name: "every cached permission revoked", timeout: 30_000 });
    expect(await partsPublished(revision)).toBe((HOSTS * PER_HOST) / PART_SIZE);
    const stats = await workerStats();
    expect(stats.reduce((sum, s) => sum + (s["fanoutRevisionsSplit"] ?? 0), 0)).toBe(1);
    expect(stats.filter((s) => (s["fanoutPartsDone"] ?? 0) > 0).length).toBeGreaterThan(1);
  }, 120_000);
});
