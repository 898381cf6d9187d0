import { readFileSync } from "node:fs";
import { PolicyResponseV1 } from "@arbiter/protocol";
import { generateKey } from "@arbiter/trust";
import { createWorker, type Worker } from "@arbiter/worker";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectTo, type NatsServerProcess, startNatsServer } from "./harness/index.js";
import { configuredWorkerKey } from "./support/arbiter.js";
import { runArbiter } from "./support/cli.js";
import { fixtureBytes } from "./support/fixtures.js";

const ACCOUNTS = readFileSync(new URL("../deploy/nats/accounts.conf", import.meta.url), "utf8");
const EXAMPLE = new URL("../deploy/rules/example.yaml", import.meta.url).pathname;
const PASSWORDS = {
  ARBITER_WORKER_PASSWORD: "worker-secret",
  ARBITER_ADMIN_PASSWORD: "admin-secret",
  WASMCLOUD_HOST_PASSWORD: "host-secret",
};

describe("deploy/nats/accounts.conf on a real server", () => {
  let server: NatsServerProcess;
  let workerNc: NatsConnection;
  let hostNc: NatsConnection;
  let adminNc: NatsConnection;
  let worker: Worker;
  const admin = generateKey("O");

  async function rulesRevision(): Promise<number> {
    return (await (await jetstreamManager(adminNc)).streams.info("ARBITER_RULES")).state.last_seq;
  }

  beforeAll(async () => {
    server = await startNatsServer({ extraConfig: ACCOUNTS, env: PASSWORDS });
    const applied = await runArbiter(["rules", "apply", EXAMPLE, "--json"], {
      NATS_URL: server.url,
      NATS_USER: "arbiter-admin",
      NATS_PASSWORD: PASSWORDS.ARBITER_ADMIN_PASSWORD,
      ARBITER_ADMIN_SEED: admin.seed,
    });
    expect(applied.code, applied.stderr).toBe(0);
    adminNc = await connectTo(server.url, { user: "arbiter-admin", pass: PASSWORDS.ARBITER_ADMIN_PASSWORD });
    workerNc = await connectTo(server.url, {
      user: "arbiter-worker",
      pass: PASSWORDS.ARBITER_WORKER_PASSWORD,
    });
    hostNc = await connectTo(server.url, { user: "wasmcloud-host", pass: PASSWORDS.WASMCLOUD_HOST_PASSWORD });
    worker = createWorker({
      nc: workerNc,
      logger: pino({ level: "silent" }),
      config: { adminKeys: [admin.publicKey], ...configuredWorkerKey() },
    });
    await worker.start();
  });

  afterAll(async () => {
    await worker?.stop();
    await Promise.allSettled([workerNc, hostNc, adminNc].map((nc) => nc?.close()));
    await server?.stop();
  });

  it("lets a host ask and a worker answer, recording the decision", async () => {
    const reply = await hostNc.request("wasmcloud.policy", fixtureBytes("start-provider"), { timeout: 5000 });
    expect(PolicyResponseV1.parse(JSON.parse(reply.string()))).toMatchObject({ permitted: true });
    expect(worker.stats()).toMatchObject({ decisions: 1, logFailures: 0 });
  });

  it("keeps hosts from answering policy requests themselves", async () => {
    const impostor = hostNc.subscribe("wasmcloud.policy");
    const closed = await impostor.closed;
    expect(String(closed)).toMatch(/permissions violation/i);
  });

  it("keeps hosts and workers from writing rule events", async () => {
    const before = await rulesRevision();
    for (const nc of [hostNc, workerNc]) {
      await expect(jetstream(nc, { timeout: 1000 }).publish("arbiter.rules.events", "{}")).rejects.toThrow();
    }
    expect(await rulesRevision()).toBe(before);
  });

  it("keeps hosts from writing decisions or reading and deleting Arbiter's streams", async () => {
    await expect(
      jetstream(hostNc, { timeout: 1000 }).publish("arbiter.decisions.startComponent.NHOST", "{}"),
    ).rejects.toThrow();
    const hostJsm = await jetstreamManager(hostNc, { timeout: 1000 });
    await expect(hostJsm.streams.info("ARBITER_DECISIONS")).rejects.toThrow();
    await expect(hostJsm.streams.delete("ARBITER_RULES")).rejects.toThrow();
    await expect(
      (await jetstreamManager(workerNc, { timeout: 1000 })).streams.delete("ARBITER_RULES"),
    ).rejects.toThrow();
    expect(await rulesRevision()).toBeGreaterThanOrEqual(1);
  });
});
