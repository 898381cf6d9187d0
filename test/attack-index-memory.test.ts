import type { HostPolicyClient } from "@arbiter/host";
import { openIndexMirror } from "@arbiter/store";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { until } from "./harness/index.js";
import { askPolicy, nthRequestId, startComponentText } from "./support/crafted-requests.js";
import {
  applyRules,
  componentBody,
  defaultRules,
  untilIndexCaughtUp,
  untilRevisionReevaluated,
} from "./support/fanout.js";
import { type FanoutArbiter, startFanoutArbiter } from "./support/fanout-setup.js";

// Every worker's mirror holds the whole active index in memory, and a host chooses how large its
// entries are: up to max_payload each, one per cache key it asks for. The mirror was bounded by its
// count of keys only (200,000, "about 3 KB an entry"), so a few thousand requests of a megabyte for
// distinct components took every worker's heap (870 KB requests of strings: some 2 GB sent). A
// mirror now holds at most so many bytes of the bucket's stream; past them re-evaluations read
// the bucket from the server, as past the key count.

const BUDGET = 1_000_000;

let arbiter: FanoutArbiter;
let honest: HostPolicyClient;

beforeAll(async () => {
  arbiter = await startFanoutArbiter({
    rules: defaultRules("allow"),
    workers: ["w1"],
    workerConfig: { indexMirrorMaxBytes: BUDGET },
  });
  honest = await arbiter.startHost();
}, 60_000);

afterAll(async () => {
  await arbiter?.close();
});

describe("an active index of large entries", () => {
  it("is not held by the mirrors past their bytes, and its revisions still reach every host", async () => {
    expect((await honest.evaluateStartComponent(componentBody("honest-app"))).permitted).toBe(true);
    const nc = await arbiter.connect("host");
    for (let i = 0; i < 4; i++) {
      const text = startComponentText({
        requestId: nthRequestId(i, "0194d000"),
        componentId: `large-${i}`,
        extra: `,"pad":"${"x".repeat(400_000)}"`,
      });
      expect((await askPolicy(nc, text)).permitted).toBe(true);
    }
    await untilIndexCaughtUp(arbiter.nc);

    const mirror = await openIndexMirror(arbiter.nc, { maxBytes: BUDGET, timeoutMs: 5000 });
    try {
      expect(await mirror.view()).toBe("too large");
    } finally {
      await mirror.close();
    }
    const roomy = await openIndexMirror(arbiter.nc, { timeoutMs: 5000 });
    try {
      const view = await roomy.view();
      expect(typeof view).not.toBe("string");
      if (typeof view !== "string") view[Symbol.dispose]();
    } finally {
      await roomy.close();
    }

    const revision = await applyRules(arbiter.admin, defaultRules("deny"));
    await untilRevisionReevaluated(arbiter.nc, revision);
    await until(() => [...honest.cacheEntries().values()].every((e) => !e.permitted), {
      name: "the honest host's entry revoked",
      timeout: 15_000,
    });
  }, 60_000);
});
