import { PolicyResponseV1, resourceNames } from "@arbiter/protocol";
import { parseRulesDocument } from "@arbiter/rules";
import { createMemoryStore, createRulesAdmin, openJetStreamStore } from "@arbiter/store";
import { createSigner, generateKey } from "@arbiter/trust";
import { createWorker } from "@arbiter/worker";
import { jetstreamManager } from "@nats-io/jetstream";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectTo, startNatsServer, until } from "./harness/index.js";
import { configuredWorkerKey, type SingleNodeArbiter, startSingleNodeArbiter } from "./support/arbiter.js";
import { exampleRulesText, fixtureBytes } from "./support/fixtures.js";

const names = resourceNames();
const silent = pino({ level: "silent" });

describe("a worker whose rules feed breaks", () => {
  let arbiter: SingleNodeArbiter;

  beforeAll(async () => {
    arbiter = await startSingleNodeArbiter({ followRetryMs: 50 });
  });

  afterAll(async () => {
    await arbiter?.stop();
  });

  it("goes degraded with the reason, follows again from its revision, and is ready once caught up", async () => {
    const { worker, nc } = arbiter;
    expect(worker.health).toEqual({ state: "ready", reason: null });
    const jsm = await jetstreamManager(nc);
    const rules = await jsm.streams.info(names.rulesStream);
    await jsm.streams.delete(names.rulesStream);
    await until(() => worker.health.state === "degraded", { name: "the worker degraded" });
    expect(worker.health.reason).toMatch(/rule event/);
    // Still deciding, on the rules it had, while the feed is down.
    expect((await arbiter.ask(fixtureBytes("start-provider"))).permitted).toBe(true);

    await jsm.streams.add(rules.config);
    await until(() => worker.health.state === "ready", { name: "the worker ready again", timeout: 15_000 });
    expect(worker.stats().ruleFeedRestarts).toBeGreaterThan(0);

    // The new feed is followed from the worker's revision on: revision 2 is folded and enforced.
    const admin = createRulesAdmin({ store: await openJetStreamStore(nc), signer: arbiter.signer });
    await admin.apply(parseRulesDocument(exampleRulesText()));
    await admin.apply({ version: 1, default: "allow", rules: [] });
    await until(() => worker.revision === 2, { name: "revision 2 folded", timeout: 15_000 });
    const reply = await nc.request("wasmcloud.policy", fixtureBytes("start-component"), { timeout: 5000 });
    expect(PolicyResponseV1.parse(JSON.parse(reply.string())).permitted).toBe(true);
    expect(worker.health).toEqual({ state: "ready", reason: null });
  });
});

describe("a worker whose start fails", () => {
  it("leaves nothing open when JetStream is not there", async () => {
    await using server = await startNatsServer({ jetstream: false });
    await using nc = await connectTo(server.url);
    const worker = createWorker({
      nc,
      logger: silent,
      config: { ackTimeoutMs: 500, ...configuredWorkerKey() },
    });
    await expect(worker.start()).rejects.toThrow(/JetStream/);
    expect(worker.health).toEqual({ state: "stopped", reason: null });
    await expect(
      nc.request("wasmcloud.policy", fixtureBytes("start-provider"), { timeout: 1000 }),
    ).rejects.toThrow(/no responders/i);
    await expect(nc.request(names.statusSubject, new Uint8Array(), { timeout: 1000 })).rejects.toThrow(
      /no responders/i,
    );
  });

  it("leaves nothing open when the rules cannot be followed, and can start again", async () => {
    await using server = await startNatsServer();
    await using nc = await connectTo(server.url);
    const store = createMemoryStore();
    const follow = store.rules.follow.bind(store.rules);
    let broken = true;
    store.rules.follow = async (from, onEvent) => {
      if (broken) throw new Error("rules unavailable");
      return follow(from, onEvent);
    };
    const worker = createWorker({
      nc,
      store,
      logger: silent,
      config: { adminKeys: [createSigner(generateKey("O").seed).publicKey], ...configuredWorkerKey() },
    });
    await expect(worker.start()).rejects.toThrow(/rules unavailable/);
    expect(worker.status).toBe("stopped");
    await expect(
      nc.request("wasmcloud.policy", fixtureBytes("start-provider"), { timeout: 1000 }),
    ).rejects.toThrow(/no responders/i);
    broken = false;
    await worker.start();
    expect(worker.status).toBe("ready");
    await worker.stop();
  });
});
