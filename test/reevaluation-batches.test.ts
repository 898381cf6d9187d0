import { resourceNames } from "@arbiter/protocol";
import { BATCH_CAUSE_HEADER, openJetStreamActiveIndex, REEVALUATION_BATCH_CAUSE } from "@arbiter/store";
import { jetstreamManager } from "@nats-io/jetstream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { until } from "./harness/index.js";
import {
  applyRules,
  componentBody,
  defaultRules,
  untilIndexCaughtUp,
  untilRevisionReevaluated,
} from "./support/fanout.js";
import { type FanoutArbiter, startFanoutArbiter } from "./support/fanout-setup.js";

// The re-evaluation's decisions are stored as batches that say so in a header, so that the
// active index's projection (which never indexes a re-evaluation) leaves them unread; the revoker
// puts the changed entries itself.

let arbiter: FanoutArbiter;

beforeAll(async () => {
  arbiter = await startFanoutArbiter({ workers: ["w1"] });
}, 60_000);

afterAll(async () => {
  await arbiter?.close();
});

describe("re-evaluation batches", () => {
  it("are marked as re-evaluations in the decision log, the request batches not, and the index holds the new outcomes", async () => {
    const host = await arbiter.startHost();
    for (let i = 0; i < 5; i++) {
      expect((await host.evaluateStartComponent(componentBody(`c${i}`))).permitted).toBe(false);
    }
    await untilIndexCaughtUp(arbiter.nc);
    const revision = await applyRules(arbiter.admin, defaultRules("allow"));
    await untilRevisionReevaluated(arbiter.nc, revision);
    await until(() => [...host.cacheEntries().values()].every((e) => e.permitted), {
      name: "every cached denial permitted",
      timeout: 30_000,
      interval: 50,
    });

    const names = resourceNames();
    const jsm = await jetstreamManager(arbiter.nc);
    const last = (await jsm.streams.info(names.decisionsStream)).state.last_seq;
    const causes = { request: 0, reevaluation: 0, marked: 0, unmarked: 0 };
    for (let seq = 1; seq <= last; seq++) {
      const message = await jsm.streams.getMessage(names.decisionsStream, { seq });
      if (message === null) throw new Error(`decision message ${seq} is not there`);
      const lines = message.string().split("\n");
      const kinds = new Set(lines.map((line) => (JSON.parse(line) as { cause: string }).cause));
      expect(kinds.size).toBe(1);
      const marked = message.header.get(BATCH_CAUSE_HEADER) === REEVALUATION_BATCH_CAUSE;
      if (kinds.has("reevaluation")) {
        causes.reevaluation += lines.length;
        expect(marked).toBe(true);
        causes.marked++;
      } else {
        causes.request += lines.length;
        expect(message.header.get(BATCH_CAUSE_HEADER)).toBe("");
        causes.unmarked++;
      }
    }
    expect(causes.request).toBe(5);
    expect(causes.reevaluation).toBe(5);
    expect(causes.marked).toBeGreaterThan(0);

    const index = await openJetStreamActiveIndex(arbiter.nc, { create: false });
    try {
      let entries = 0;
      for await (const entry of index.entries()) {
        entries++;
        expect(entry).toMatchObject({ permitted: true, revision });
      }
      expect(entries).toBe(5);
    } finally {
      await index.close();
    }
  }, 60_000);
});
