import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { HostPolicyClient } from "@arbiter/host";
import { resourceNames } from "@arbiter/protocol";
import {
  type ActiveIndex,
  createRulesAdmin,
  openJetStreamActiveIndex,
  openJetStreamStore,
} from "@arbiter/store";
import { generateKey } from "@arbiter/trust";
import type { Worker } from "@arbiter/worker";
import { jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { until } from "./harness/index.js";
import { enrolledWorkerSeed } from "./support/arbiter.js";
import { runArbiter, spawnArbiter } from "./support/cli.js";
import { applyRules, componentBody, defaultRules } from "./support/fanout.js";
import { type FanoutArbiter, startFanoutArbiter } from "./support/fanout-setup.js";
import { type PausableProxy, startPausableProxy } from "./support/pausable-proxy.js";

// `arbiter rules apply --wait` against three real workers: wait-a and wait-c re-evaluate, wait-b
// only decides and reaches JetStream through a relay the tests can hold (a slow link to the rules).

const HOSTS = 3;
const PER_HOST = 4;
const names = resourceNames();

let arbiter: FanoutArbiter;
let index: ActiveIndex;
let proxy: PausableProxy;
let slowNc: NatsConnection;
let home: string;
let env: Record<string, string>;
const hosts: HostPolicyClient[] = [];
const workers = new Map<string, Worker>();
const seeds = new Map<string, string>();

/** A rules file: every request permitted, or denied, with `extra` rules. */
function rulesFile(name: string, effect: "allow" | "deny", extra: readonly object[] = []): string {
  const file = join(home, `${name}.json`);
  writeFileSync(file, JSON.stringify({ version: 1, default: effect, rules: extra }));
  return file;
}

async function startWorker(id: string, options: { storeNc?: NatsConnection; revoke?: boolean } = {}) {
  const worker = await arbiter.startWorker(id, {
    seed: seeds.get(id),
    ...(options.storeNc ? { storeNc: options.storeNc } : {}),
    config: { revoke: options.revoke ?? true },
  });
  workers.set(id, worker);
  return worker;
}

function worker(id: string): Worker {
  const found = workers.get(id);
  if (found === undefined) throw new Error(`no worker ${id}`);
  return found;
}

function cachedOutcomes(): boolean[] {
  return hosts.flatMap((host) => [...host.cacheEntries().values()].map((entry) => entry.permitted));
}

function lastRevision(): Promise<number> {
  return arbiter.store.rules.lastRevision();
}

beforeAll(async () => {
  arbiter = await startFanoutArbiter({ workers: [], workerConfig: { chainCheckMs: 200 } });
  index = await openJetStreamActiveIndex(arbiter.nc, { create: false });
  for (const id of ["wait-a", "wait-b", "wait-c"]) seeds.set(id, await enrolledWorkerSeed(arbiter.admin, id));
  home = mkdtempSync(join(tmpdir(), "arbiter-apply-wait-"));
  env = {
    NATS_URL: arbiter.server.url,
    ARBITER_ADMIN_SEED: arbiter.adminSeed,
    ARBITER_ADMIN_KEYS: "",
    ARBITER_HOME: home,
    ARBITER_LOG_LEVEL: "warn",
  };
  proxy = await startPausableProxy(arbiter.server.url);
  slowNc = await arbiter.connect("worker", proxy.url);
  await startWorker("wait-a");
  await startWorker("wait-b", { storeNc: slowNc, revoke: false });
  await startWorker("wait-c");
  for (let h = 0; h < HOSTS; h++) hosts.push(await arbiter.startHost());
  for (const [h, host] of hosts.entries()) {
    for (let i = 0; i < PER_HOST; i++) {
      expect((await host.evaluateStartComponent(componentBody(`h${h}-c${i}`))).permitted).toBe(false);
    }
  }
}, 60_000);

afterAll(async () => {
  proxy?.resume();
  await arbiter?.close();
  await proxy?.[Symbol.asyncDispose]();
  if (home) rmSync(home, { recursive: true, force: true });
});

describe("arbiter rules apply --wait", () => {
  it("returns once every worker serves the revision and its overrides are out: every host's cache already holds the new outcome", async () => {
    const file = rulesFile("allow", "allow");
    const applied = await runArbiter(["rules", "apply", file, "--wait", "--json"], env);
    // No polling: when the command returns, the lattice enforces the new rules.
    const outcomes = cachedOutcomes();
    expect(applied.code, applied.stderr).toBe(0);
    expect(outcomes).toHaveLength(HOSTS * PER_HOST);
    expect(outcomes.every((permitted) => permitted)).toBe(true);

    const result = JSON.parse(applied.stdout);
    const revision = await lastRevision();
    expect(result).toMatchObject({
      revision,
      workers: [
        { id: "wait-a", revision },
        { id: "wait-b", revision },
        { id: "wait-c", revision },
      ],
      overrides: HOSTS * PER_HOST,
      entries: HOSTS * PER_HOST,
      acceptedBy: expect.arrayContaining(["wait-a", "wait-b", "wait-c"]),
    });
    expect(result.servedMs).toBeGreaterThanOrEqual(0);
    expect(result.overridesMs).toBeGreaterThanOrEqual(0);
    expect(["wait-a", "wait-c"]).toContain(result.scannedBy.id);
    expect(await index.readScanReport(revision)).toMatchObject({
      revision,
      changed: HOSTS * PER_HOST,
      overrides: HOSTS * PER_HOST,
      worker: result.scannedBy,
    });
  }, 60_000);

  it("also waits for a revision that flips nothing, whose report says 0 overrides, and says so in a line", async () => {
    const file = rulesFile("allow-no-providers", "allow", [
      { id: "no-providers", effect: "deny", when: 'kind == "startProvider"', message: "no providers" },
    ]);
    const applied = await runArbiter(["rules", "apply", file, "--wait"], env);
    expect(applied.code, applied.stderr).toBe(0);
    const revision = await lastRevision();
    expect(applied.stdout).toContain(`rules applied at revision ${revision}`);
    expect(applied.stdout).toMatch(
      /enforced: 3 workers serve it after \d+ ms \(wait-a, wait-b, wait-c\); 0 overrides out after \d+ ms/,
    );
    expect(await index.readScanReport(revision)).toMatchObject({ revision, changed: 0, overrides: 0 });
  }, 60_000);

  it("waits for a worker whose link to the rules stream is slow, and returns once it serves the revision", async () => {
    const file = rulesFile("deny", "deny");
    const before = await lastRevision();
    proxy.pause();
    const waiting = spawnArbiter(["rules", "apply", file, "--wait", "--wait-timeout", "60s", "--json"], env);
    try {
      const revision = before + 1;
      await until(async () => (await index.readScanReport(revision)) !== null, {
        name: `the scan report of revision ${revision}`,
        timeout: 30_000,
      });
      // Every override is out and wait-a serves the revision; wait-b does not yet, so the command waits.
      expect(worker("wait-a").revision).toBe(revision);
      expect(worker("wait-b").revision).toBe(before);
      expect(waiting.child.exitCode).toBeNull();
      proxy.resume();
      await until(() => waiting.child.exitCode !== null, {
        name: "rules apply --wait to return",
        timeout: 30_000,
      });
      expect(waiting.child.exitCode, waiting.stderr()).toBe(0);
      expect(worker("wait-b").revision).toBe(revision);
      expect(JSON.parse(waiting.stdout())).toMatchObject({
        revision,
        workers: expect.arrayContaining([{ id: "wait-b", revision }]),
      });
    } finally {
      proxy.resume();
      await waiting.stop();
    }
  }, 90_000);

  it("gives up at --wait-timeout naming the worker that lagged and its revision (exit 5, WAIT_TIMEOUT)", async () => {
    const file = rulesFile("allow-again", "allow");
    const before = await lastRevision();
    proxy.pause();
    try {
      const timedOut = await runArbiter(
        ["rules", "apply", file, "--wait", "--wait-timeout", "1500ms", "--json"],
        env,
      );
      expect(timedOut.code, timedOut.stderr).toBe(5);
      const { error } = JSON.parse(timedOut.stderr);
      expect(error.code).toBe("WAIT_TIMEOUT");
      expect(error.written).toEqual({
        revision: before + 1,
        deployment: (await arbiter.admin.stateAt()).deployment,
      });
      expect(error.message).toContain(`rules written at revision ${before + 1}`);
      expect(error.message).toContain(`worker wait-b is at revision ${before}`);
      expect(error.message).not.toContain("wait-a");
    } finally {
      proxy.resume();
    }
    await until(() => worker("wait-b").revision === before + 1, { name: "wait-b to catch up" });
  }, 60_000);

  it("stopped with Ctrl-C while waiting, says the revision it wrote and exits 5, not enforced", async () => {
    const file = rulesFile("interrupted", "deny");
    const before = await lastRevision();
    proxy.pause();
    try {
      await using waiting = spawnArbiter(["rules", "apply", file, "--wait", "--wait-timeout", "60s"], env);
      await until(() => waiting.stderr().includes(`rules written at revision ${before + 1}; waiting`), {
        name: "the interrupted apply's write, acknowledged",
      });
      expect(await waiting.stop("SIGINT")).toBe(5);
      expect(waiting.stderr()).toContain(
        `rules written at revision ${before + 1} of deployment ${(await arbiter.admin.stateAt()).deployment}; stopped waiting`,
      );
    } finally {
      proxy.resume();
    }
    await until(() => worker("wait-b").revision === before + 1, { name: "wait-b to catch up" });
  }, 60_000);

  it("gives up at --wait-timeout saying no scan report appeared while no worker re-evaluates", async () => {
    await worker("wait-a").stop();
    await worker("wait-c").stop();
    const revision = (await lastRevision()) + 1;
    // A report under that revision from another deployment (a bucket that outlived its rules stream,
    // or one put there with a worker's credential) is not this revision's.
    const leftOver = {
      revision,
      deployment: "AAAAAAAAAAAAAAAAAAAAAAAAAA",
      event: "0".repeat(64),
      entries: 0,
      changed: 0,
      overrides: 0,
      startedAt: new Date().toISOString(),
      finishedAt: new Date().toISOString(),
      worker: { id: "elsewhere", publicKey: generateKey("N").publicKey },
    };
    await index.putScanReport(leftOver);
    const file = rulesFile("deny-again", "deny");
    const timedOut = await runArbiter(["rules", "apply", file, "--wait", "--wait-timeout", "2s"], env);
    expect(timedOut.code, timedOut.stderr).toBe(5);
    expect(await lastRevision()).toBe(revision);
    expect(timedOut.stderr).toContain(`no scan report of revision ${revision} appeared`);
    expect(timedOut.stderr).not.toContain("wait-b is at");
    expect(await index.readScanReport(revision)).toEqual(leftOver);
    // Nor is one of this deployment stored ahead of its revision (a worker's credential can put it
    // there long before, and it outlives the credential): it cannot name the revision's rule event.
    const deployment = (await index.readScanReport(revision - 1))?.deployment ?? null;
    expect(deployment).not.toBeNull();
    const ahead = { ...leftOver, revision: revision + 1, deployment };
    await index.putScanReport(ahead);
    const early = await runArbiter(
      ["rules", "apply", rulesFile("deny-ahead", "deny"), "--wait", "--wait-timeout", "2s"],
      env,
    );
    expect(early.code, early.stderr).toBe(5);
    expect(early.stderr).toContain(`no scan report of revision ${revision + 1} appeared`);
    await startWorker("wait-a");
    await startWorker("wait-c");
    await until(async () => (await index.readScanReport(revision))?.worker.id !== "elsewhere", {
      name: `the scan report of revision ${revision} once workers re-evaluate again`,
      timeout: 30_000,
    });
  }, 90_000);

  it("rules rollback --wait waits the same way", async () => {
    const rolled = await runArbiter(["rules", "rollback", "--to", "2", "--wait", "--json"], env);
    expect(rolled.code, rolled.stderr).toBe(0);
    const revision = await lastRevision();
    expect(JSON.parse(rolled.stdout)).toMatchObject({ revision, restored: 2, overrides: expect.any(Number) });
    expect(await index.readScanReport(revision)).not.toBeNull();
  }, 60_000);

  it("fails at once when no worker answers (exit 5, NO_WORKER_ANSWERED)", async () => {
    const file = rulesFile("elsewhere", "allow");
    const lonely = await runArbiter(
      ["rules", "apply", file, "--prefix", "nobody", "--wait", "--wait-timeout", "60s", "--json"],
      env,
    );
    expect(lonely.code, lonely.stderr).toBe(5);
    const { error } = JSON.parse(lonely.stderr);
    expect(error.code).toBe("NO_WORKER_ANSWERED");
    expect(error.written).toMatchObject({ revision: 2, deployment: expect.any(String) });
    expect(error.message).toContain("nobody.workers.status");
  }, 60_000);

  it("fails fast, saying the rules history is broken, when the rules stream was made again under running workers", async () => {
    // The stream deleted and refilled: the workers keep their last good rules and apply nothing
    // more, and a report left by the old deployment under the same revision is not this one's.
    const oldDeployment = (await arbiter.admin.stateAt()).deployment;
    const jsm = await jetstreamManager(arbiter.nc);
    await jsm.streams.delete(names.rulesStream);
    const refilled = await openJetStreamStore(arbiter.nc);
    await applyRules(createRulesAdmin({ store: refilled, signer: arbiter.signer }), defaultRules("deny"));
    await refilled.close();
    await until(() => [...workers.values()].every((w) => w.statusRecord().broken), {
      name: "every worker to find its rules history broken",
      timeout: 30_000,
    });
    const file = rulesFile("refilled", "allow");
    const broken = await runArbiter(
      ["rules", "apply", file, "--wait", "--wait-timeout", "60s", "--json"],
      env,
    );
    expect(broken.code, broken.stderr).toBe(4);
    const { error } = JSON.parse(broken.stderr);
    expect(error.code, error.message).toBe("CHAIN_BROKEN");
    expect(error.message).toContain("the rules history is broken");
    expect(error.message).toContain("rules written at revision 3");
    // Skipped, the new revision has no report: what is under its number is the old deployment's.
    expect((await index.readScanReport(3))?.deployment).toBe(oldDeployment);
  }, 90_000);
});
