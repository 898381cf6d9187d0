import { parseRulesDocument } from "@arbiter/rules";
import { createRulesAdmin, openJetStreamStore } from "@arbiter/store";
import { createSigner, generateKey } from "@arbiter/trust";
import { createWorker } from "@arbiter/worker";
import { headers } from "@nats-io/nats-core";
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { connectTo, startNatsServer, until } from "./harness/index.js";
import { configuredWorkerKey } from "./support/arbiter.js";
import { exampleRulesText, fixtureJson } from "./support/fixtures.js";
import { startPausableProxy } from "./support/pausable-proxy.js";

// The bytes a worker may hold of requests (--max-queued-bytes) counted their bodies, and the
// records of those waiting for the log their records: a host chooses the headers of its requests
// too, and the worker holds every message whole (headers, subject and reply with the body) until
// it is answered. Requests of a few bytes under a megabyte of headers each counted as a few
// hundred bytes: behind a slow log, 10,000 of them (the count bound) were 10 GB held.

describe("a worker whose decision log is slow, sent requests of large headers", () => {
  it("counts their headers against the bytes it may hold, drops the excess, and answers the rest once the log is back", async () => {
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
        id: "slow-log-headers",
        adminKeys: [signer.publicKey],
        maxQueuedBytes: 2_000_000,
        ...configuredWorkerKey(),
      },
    });
    await worker.start();
    try {
      proxy.pause();
      const template = fixtureJson("start-provider");
      const pad = headers();
      pad.set("X-Pad", "x".repeat(300_000));
      const ids = Array.from({ length: 20 }, (_, i) => `held-${i}`);
      const pending = ids.map((requestId) =>
        nc.request("wasmcloud.policy", JSON.stringify({ ...template, requestId }), {
          timeout: 15_000,
          headers: pad,
        }),
      );
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
  }, 120_000);
});
