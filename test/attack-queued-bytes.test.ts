import { PolicyResponseV1 } from "@arbiter/protocol";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type SingleNodeArbiter, startSingleNodeArbiter } from "./support/arbiter.js";
import { fixtureBytes, fixtureJson } from "./support/fixtures.js";

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
