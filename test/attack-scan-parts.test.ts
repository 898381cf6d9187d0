import type { HostPolicyClient } from "@arbiter/host";
import { resourceNames } from "@arbiter/protocol";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { until } from "./harness/index.js";
import { applyRules, componentBody, defaultRules, untilIndexCaughtUp } from "./support/fanout.js";
import { type FanoutArbiter, startFanoutArbiter } from "./support/fanout-setup.js";

// A stolen worker credential may publish on `arbiter.scans.>` (workers record parts there). Before
// it is taken back it stores, for the revisions to come, every part "done" and a part of no keys:
// when the next rules change is split, the taker must not take those for its own parts, or the
// overrides of every part would never be sent, long after the credential is gone.

const names = resourceNames();
const ENTRIES = 24;
const PART_SIZE = 5;

let arbiter: FanoutArbiter;
let host: HostPolicyClient;

beforeAll(async () => {
  arbiter = await startFanoutArbiter({
    shippedPermissions: true,
    workers: ["w1"],
    workerConfig: { scanPartSize: PART_SIZE },
  });
  host = await arbiter.startHost();
  for (let i = 0; i < ENTRIES; i++) {
    expect((await host.evaluateStartComponent(componentBody(`c${i}`))).permitted).toBe(false);
  }
  await untilIndexCaughtUp(arbiter.nc);
}, 60_000);

afterAll(async () => {
  await arbiter?.close();
});

describe("split re-evaluations, against a stolen worker credential", () => {
  it("records made before a revision exists do not stand in for its parts", async () => {
    const stolen = jetstream(await arbiter.connect("worker"));
    const jsm = await jetstreamManager(arbiter.nc);
    const next = (await jsm.streams.info(names.rulesStream)).state.last_seq + 1;
    const parts = Math.ceil(ENTRIES / PART_SIZE);
    const done = { worker: "w1", scanned: PART_SIZE, changed: 0, overrides: 0 };
    // It cannot know the hash of an event not yet signed: it names none, or one of its own.
    const guessed = "0".repeat(64);
    for (let part = 0; part < parts; part++) {
      await stolen.publish(
        `arbiter.scans.done.${next}.${part}`,
        JSON.stringify({ revision: next, part, ...done }),
        { msgID: `done:${next}:${part}` },
      );
      await stolen.publish(
        `arbiter.scans.done.${next}.${guessed}.${part}`,
        JSON.stringify({ revision: next, scan: guessed, part, ...done }),
        { msgID: `done:${next}:${guessed}:${part}` },
      );
    }
    await stolen.publish(
      `arbiter.scans.part.${next}.0`,
      JSON.stringify({ revision: next, part: 0, parts, keys: [] }),
      { msgID: `part:${next}:0` },
    );
    await stolen.publish(
      `arbiter.scans.part.${next}.1`,
      JSON.stringify({ revision: next, scan: guessed, part: 1, parts, keys: [] }),
      { msgID: `part:${next}:${guessed}:1` },
    );
    expect(await applyRules(arbiter.admin, defaultRules("allow"))).toBe(next);
    await until(() => [...host.cacheEntries().values()].every((entry) => entry.permitted), {
      name: "every cached denial permitted, through every part",
      timeout: 20_000,
      interval: 50,
    });
    expect(host.cacheEntries().size).toBe(ENTRIES);
  }, 60_000);
});
