import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { until } from "./harness/index.js";
import { applyRules, componentBody, defaultRules, untilIndexCaughtUp } from "./support/fanout.js";
import { type FanoutArbiter, startFanoutArbiter } from "./support/fanout-setup.js";

// `arbiter worker` with ARBITER_INDEX_MIRROR_MAX_BYTES below the index's size: its re-evaluations
// read the index from the server, say so, and the overrides still go out.

let arbiter: FanoutArbiter;

beforeAll(async () => {
  arbiter = await startFanoutArbiter({ workers: [] });
}, 60_000);

afterAll(async () => {
  await arbiter?.close();
});

describe("arbiter worker's bound on the bytes its mirror of the index holds", () => {
  it("reads the index from the server past ARBITER_INDEX_MIRROR_MAX_BYTES, and the override is sent", async () => {
    const worker = await arbiter.spawnWorker("mirror-bytes", {
      env: { ARBITER_INDEX_MIRROR_MAX_BYTES: "1" },
    });
    const host = await arbiter.startHost();
    expect((await host.evaluateStartComponent(componentBody("app"))).permitted).toBe(false);
    await untilIndexCaughtUp(arbiter.nc);
    await applyRules(arbiter.admin, defaultRules("allow"));
    await until(() => [...host.cacheEntries().values()].every((e) => e.permitted), {
      name: "the cached denial permitted",
      timeout: 30_000,
    });
    expect(worker.stdout() + worker.stderr()).toContain("re-evaluations read the index from the server");
  }, 60_000);
});
