import { PolicyResponseV1 } from "@arbiter/protocol";
import { parseRulesDocument } from "@arbiter/rules";
import { createRulesAdmin, openJetStreamStore } from "@arbiter/store";
import { createSigner, generateKey } from "@arbiter/trust";
import { createWorker } from "@arbiter/worker";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectTo, startNatsServer, until } from "./harness/index.js";
import { configuredWorkerKey, type SingleNodeArbiter, startSingleNodeArbiter } from "./support/arbiter.js";
import { exampleRulesText, fixtureBytes, fixtureJson } from "./support/fixtures.js";
import { startPausableProxy } from "./support/pausable-proxy.js";

// Requests waiting to be decided were bounded by their count only (10,000 by default), and a host
// chooses how large its requests are: 10,000 of a megabyte, sent faster than a worker decides them,
// were 10 GB held by it. The queue now holds so many bytes at most, and drops the excess
// unanswered as it drops requests past the count (the host fails closed, uncached).

let arbiter: SingleNodeArbiter;

beforeAll(async () => {
  arbiter = await startSingleNodeArbiter({ id: "small-bytes", maxQueuedBytes: 2_000_000 });
});

afterAll(async () => {
  await arbiter?.stop();
});

describe("a worker sent more bytes of requests than it may queue", () => {
  it("drops the excess unanswered, answers the rest, and keeps serving", async () => {
    const { nc, worker } = arbiter;
    const template = fixtureJson("start-provider");
    const pad = "x".repeat(300_000);
    const ids = Array.from({ length: 100 }, (_, i) => `large-${i}`);
    const outcomes = await Promise.allSettled(
      ids.map((requestId) =>
        nc.request("wasmcloud.policy", JSON.stringify({ ...template, requestId, pad }), { timeout: 5000 }),
      ),
    );
    const answered = outcomes.filter((o) => o.status === "fulfilled");
    for (const outcome of answered) {
      expect(PolicyResponseV1.parse(JSON.parse(outcome.value.string())).permitted).toBe(true);
    }
    const { shed } = worker.stats();
    expect(shed).toBeGreaterThan(0);
    expect(answered.length + shed).toBe(ids.length);
    expect((await arbiter.ask(fixtureBytes("start-provider"))).permitted).toBe(true);
  }, 60_000);
});

describe("a worker whose decision log is slow, sent more bytes of requests than it may hold", () => {
  it("counts the records waiting for their acknowledgement, drops the excess, and answers the rest once the log is back", async () => {
    await using server = await startNatsServer();
    const nc = await connectTo(server.url);
    await using proxy = await startPausableProxy(server.url);
    const storeNc = await connectTo(proxy.url);
    const store = await openJetStreamStore(nc);
    const signer = createSigner(generateKey("O").seed);
    await createRulesAdmin({ store, signer }).apply(parseRulesDocument(exampleRulesText()));
    const worker = createWorker({
      nc,
      storeNc,
      logger: pino({ level: "silent" }),
      config: {
        id: "slow-log",
        adminKeys: [signer.publicKey],
        maxQueuedBytes: 2_000_000,
        ...configuredWorkerKey(),
      },
    });
    await worker.start();
    try {
      proxy.pause();
      const template = fixtureJson("start-provider");
      const pad = "x".repeat(300_000);
      const ids = Array.from({ length: 20 }, (_, i) => `held-${i}`);
      const pending = ids.map((requestId) =>
        nc.request("wasmcloud.policy", JSON.stringify({ ...template, requestId, pad }), { timeout: 5000 }),
      );
      // Sent one after the other, each decided before the next: only the held records fill the bound.
      await until(() => worker.stats().shed > 0, { name: "requests dropped past the held bytes" });
      proxy.resume();
      const outcomes = await Promise.allSettled(pending);
      const answered = outcomes.filter((o) => o.status === "fulfilled").length;
      const { shed } = worker.stats();
      expect(answered).toBeGreaterThan(0);
      expect(answered).toBeLessThanOrEqual(7);
      expect(answered + shed).toBe(ids.length);
    } finally {
      await worker.stop();
      await store.close();
      await storeNc.close();
      await nc.close();
    }
  }, 60_000);
});
