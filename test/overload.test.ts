import { DecisionV1, PolicyResponseV1 } from "@arbiter/protocol";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { until } from "./harness/index.js";
import { type SingleNodeArbiter, startSingleNodeArbiter } from "./support/arbiter.js";
import { fixtureBytes, fixtureJson } from "./support/fixtures.js";
import { captureLog } from "./support/log-capture.js";

describe("a worker with more requests waiting than it may queue", () => {
  let arbiter: SingleNodeArbiter;
  const log = captureLog();

  beforeAll(async () => {
    arbiter = await startSingleNodeArbiter(
      { id: "small-queue", maxQueuedRequests: 4 },
      { logger: log.logger },
    );
  });

  afterAll(async () => {
    await arbiter?.stop();
  });

  it("drops the excess unanswered, records every answer it gave, and keeps serving", async () => {
    const { nc, worker, store } = arbiter;
    const template = fixtureJson("start-provider");
    const ids = Array.from({ length: 300 }, (_, i) => `flood-${i}`);
    // Sent in one go, so the worker reads far more than four at a time.
    const outcomes = await Promise.allSettled(
      ids.map((requestId) =>
        nc.request("wasmcloud.policy", new TextEncoder().encode(JSON.stringify({ ...template, requestId })), {
          timeout: 2000,
        }),
      ),
    );
    const answered = new Set<string>();
    for (const outcome of outcomes) {
      if (outcome.status !== "fulfilled") continue;
      const answer = PolicyResponseV1.parse(JSON.parse(outcome.value.string()));
      expect(answer.permitted).toBe(true);
      answered.add(answer.requestId);
    }
    const { shed } = worker.stats();
    expect(shed).toBeGreaterThan(0);
    expect(answered.size + shed).toBe(ids.length);

    const recorded = new Set<string>();
    for await (const stored of store.decisions.read({ kind: "startProvider" })) {
      recorded.add(DecisionV1.parse(JSON.parse(stored.text)).requestId);
    }
    for (const id of answered) expect(recorded.has(id), id).toBe(true);

    expect((await arbiter.ask(fixtureBytes("start-provider"))).permitted).toBe(true);

    // Every drop is reported: the warnings, at most one a second, add up to the true count.
    const logged = () =>
      log
        .lines()
        .filter((l) => /overloaded/.test(String(l["msg"])))
        .reduce((sum, l) => sum + Number(l["dropped"]), 0);
    await until(() => logged() === worker.stats().shed, {
      name: "the logged drops adding up to stats().shed",
      timeout: 5000,
    });
  });
});
