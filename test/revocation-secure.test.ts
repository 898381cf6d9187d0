import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { WORKER_REPLY_PREFIXES } from "@arbiter/embedded-nats";
import type { HostPolicyClient } from "@arbiter/host";
import { createRulesAdmin, openJetStreamStore, type RulesAdmin } from "@arbiter/store";
import { createSigner, generateKey } from "@arbiter/trust";
import { createWorker, type Worker } from "@arbiter/worker";
import type { NatsConnection } from "@nats-io/nats-core";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectTo, type NatsServerProcess, startNatsServer, until } from "./harness/index.js";
import { configuredWorkerKey } from "./support/arbiter.js";
import { runArbiter } from "./support/cli.js";
import { applyRules, componentBody, defaultRules, startHost } from "./support/fanout.js";
import { TEST_PASSWORDS } from "./support/permission-attacks.js";

// The fan-out under the shipped permissions: workers may not create its bucket or consumers, only
// bind to those the admin's store made.

const ACCOUNTS = readFileSync(new URL("../deploy/nats/accounts.conf", import.meta.url), "utf8");

let server: NatsServerProcess;
let adminNc: NatsConnection;
let admin: RulesAdmin;
let worker: Worker;
let host: HostPolicyClient;
const adminSeed = generateKey("O").seed;
const logLines: string[] = [];
const connections: NatsConnection[] = [];

beforeAll(async () => {
  server = await startNatsServer({ extraConfig: ACCOUNTS, env: { ...TEST_PASSWORDS } });
  adminNc = await connectTo(server.url, {
    user: "arbiter-admin",
    pass: TEST_PASSWORDS["ARBITER_ADMIN_PASSWORD"],
    inboxPrefix: "_INBOX_arbiter_admin",
  });
  connections.push(adminNc);
  // An admin's store that leaves the fan-out out: the worker finds no bucket and no consumers.
  const store = await openJetStreamStore(adminNc, { createFanOut: false });
  const signer = createSigner(adminSeed);
  admin = createRulesAdmin({ store, signer });
  await applyRules(admin, defaultRules("deny"));
  const workerNc = await connectTo(server.url, {
    user: "arbiter-worker",
    pass: TEST_PASSWORDS["ARBITER_WORKER_PASSWORD"],
    inboxPrefix: "_INBOX_arbiter_worker",
  });
  connections.push(workerNc);
  const sink = new Writable({
    write(chunk, _encoding, done) {
      logLines.push(String(chunk));
      done();
    },
  });
  worker = createWorker({
    nc: workerNc,
    logger: pino({ level: "warn" }, sink),
    config: {
      adminKeys: [signer.publicKey],
      inboxPrefixes: [...WORKER_REPLY_PREFIXES],
      ...configuredWorkerKey(),
    },
  });
  await worker.start();
  const hostNc = await connectTo(server.url, {
    user: "wasmcloud-host",
    pass: TEST_PASSWORDS["WASMCLOUD_HOST_PASSWORD"],
  });
  connections.push(hostNc);
  host = await startHost(hostNc);
}, 60_000);

afterAll(async () => {
  await host?.stop();
  await worker?.stop();
  for (const c of connections) await c.close();
  await server?.stop();
});

describe("the revocation fan-out under the shipped permissions", () => {
  it("answers while the admin has not made the fan-out's consumers, and overrides once it has", async () => {
    const answer = await host.evaluateStartComponent(componentBody("c1"));
    expect(answer.permitted).toBe(false);
    expect(answer.failure).toBeUndefined();
    await until(() => logLines.some((line) => line.includes("cannot open its feeds yet")), {
      name: "the worker logs the missing consumers",
    });
    // The admin's store as `rules apply` and `up` open it: the bucket and both pull consumers.
    await openJetStreamStore(adminNc);
    await applyRules(admin, defaultRules("allow"));
    await until(() => [...host.cacheEntries().values()].every((entry) => entry.permitted), {
      name: "the cached denial permitted by an override",
      timeout: 30_000,
      interval: 50,
    });
    expect(host.cacheEntries().size).toBe(1);
  });

  it("rules apply --wait, as the admin user, returns once the worker's scan report is there: the host's cache holds the denial", async () => {
    const dir = mkdtempSync(join(tmpdir(), "arbiter-secure-wait-"));
    const file = join(dir, "deny.json");
    writeFileSync(file, JSON.stringify({ version: 1, default: "deny", rules: [] }));
    const applied = await runArbiter(["rules", "apply", file, "--wait", "--json"], {
      NATS_URL: server.url,
      NATS_USER: "arbiter-admin",
      NATS_PASSWORD: TEST_PASSWORDS["ARBITER_ADMIN_PASSWORD"] ?? "",
      ARBITER_ADMIN_SEED: adminSeed,
      ARBITER_ADMIN_KEYS: "",
      ARBITER_HOME: dir,
      ARBITER_LOG_LEVEL: "warn",
    });
    const cached = [...host.cacheEntries().values()].map((entry) => entry.permitted);
    rmSync(dir, { recursive: true, force: true });
    expect(applied.code, applied.stderr).toBe(0);
    expect(JSON.parse(applied.stdout)).toMatchObject({ overrides: 1, workers: [{ id: worker.id }] });
    expect(cached).toEqual([false]);
  });

  it("with workers per host, an override reaches a host's own subject through the lattice account's import", async () => {
    await worker.stop();
    const workerNc = await connectTo(server.url, {
      user: "arbiter-worker",
      pass: TEST_PASSWORDS["ARBITER_WORKER_PASSWORD"],
      inboxPrefix: "_INBOX_arbiter_worker",
    });
    connections.push(workerNc);
    worker = createWorker({
      nc: workerNc,
      logger: pino({ level: "silent" }),
      config: {
        adminKeys: [createSigner(adminSeed).publicKey],
        inboxPrefixes: [...WORKER_REPLY_PREFIXES],
        changesPerHost: true,
        ...configuredWorkerKey(),
      },
    });
    await worker.start();
    const hostNc = await connectTo(server.url, {
      user: "wasmcloud-host",
      pass: TEST_PASSWORDS["WASMCLOUD_HOST_PASSWORD"],
    });
    connections.push(hostNc);
    const key = generateKey("N").publicKey;
    const own = await startHost(hostNc, { changesTopic: `wasmcloud.policy.changes.${key}` }, key);
    try {
      expect((await own.evaluateStartComponent(componentBody("c2"))).permitted).toBe(false);
      await applyRules(admin, defaultRules("allow"));
      await until(() => [...own.cacheEntries().values()].every((entry) => entry.permitted), {
        name: "the cached denial permitted by an override on the host's own subject",
        timeout: 30_000,
        interval: 50,
      });
      expect(own.stats()).toMatchObject({ overridesApplied: 1, overridesIgnored: 0 });
    } finally {
      await own.stop();
    }
  });
});
