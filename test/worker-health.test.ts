import { resourceNames } from "@arbiter/protocol";
import {
  type ArbiterStore,
  createMemoryStore,
  createRulesAdmin,
  openJetStreamStore,
  StoreUnavailableError,
} from "@arbiter/store";
import { createSigner, generateKey } from "@arbiter/trust";
import { createWorker } from "@arbiter/worker";
import { jetstreamManager } from "@nats-io/jetstream";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectTo, startNatsServer, until } from "./harness/index.js";
import { configuredWorkerKey, type SingleNodeArbiter, startSingleNodeArbiter } from "./support/arbiter.js";
import { fixtureBytes } from "./support/fixtures.js";

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

  it("goes degraded with the reason, follows again from its revision once the stream is restored, and is ready", async () => {
    const { nc } = arbiter;
    // The worker reads the rules through a gate the test closes while it restores the stream, so
    // that it never looks at a half-restored stream (which it would take for a refilled one).
    const store = await openJetStreamStore(nc);
    let restoring = false;
    const gate = <T>(read: () => Promise<T>): Promise<T> =>
      restoring ? Promise.reject(new StoreUnavailableError("the rules stream is being restored")) : read();
    const rules = store.rules;
    const gated: ArbiterStore = {
      ...store,
      rules: {
        append: (text, expected) => rules.append(text, expected),
        read: (range) => rules.read(range),
        lastRevision: () => gate(() => rules.lastRevision()),
        get: (revision) => gate(() => rules.get(revision)),
        follow: (from, onEvent) => gate(() => rules.follow(from, onEvent)),
      },
    };
    const worker = createWorker({
      nc,
      store: gated,
      logger: silent,
      config: {
        adminKeys: [arbiter.signer.publicKey],
        followRetryMs: 50,
        queueGroup: "gated",
        ...configuredWorkerKey(),
      },
    });
    await worker.start();
    try {
      expect(worker.health).toEqual({ state: "ready", reason: null });
      const jsm = await jetstreamManager(nc);
      const info = await jsm.streams.info(names.rulesStream);
      const texts: string[] = [];
      for await (const e of rules.read()) texts.push(e.text);
      restoring = true;
      await jsm.streams.delete(names.rulesStream);
      await until(() => worker.health.state === "degraded", { name: "the worker degraded" });
      expect(worker.health.reason).toMatch(/rule event/);
      // Still deciding, on the rules it had, while the feed is down.
      expect((await arbiter.ask(fixtureBytes("start-provider"))).permitted).toBe(true);

      // Restored as it was: the same events, byte for byte, so the chain is whole.
      await jsm.streams.add(info.config);
      for (const [i, text] of texts.entries()) await rules.append(text, i);
      restoring = false;
      await until(() => worker.health.state === "ready", { name: "the worker ready again", timeout: 15_000 });
      expect(worker.stats().ruleFeedRestarts).toBeGreaterThan(0);
      expect(worker.stats().chainBreaks).toBe(0);

      // The restored feed is followed from the worker's revision on: the next change is enforced.
      const admin = createRulesAdmin({ store, signer: arbiter.signer });
      const { revision } = await admin.apply({ version: 1, default: "allow", rules: [] });
      await until(() => worker.revision === revision, { name: "the new revision folded", timeout: 15_000 });
      expect(worker.health).toEqual({ state: "ready", reason: null });
    } finally {
      restoring = false;
      await worker.stop();
    }
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
