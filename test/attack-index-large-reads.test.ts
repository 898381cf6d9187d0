import type { HostPolicyClient } from "@arbiter/host";
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
import { captureLog } from "./support/log-capture.js";

// A scan that reads the active index from the server (no mirror, or an index too large for one)
// kept 512 direct gets in flight, whatever the entries weigh: a host's requests of 800 KB for
// distinct components made that some 400 MB asked for at once, far past what nats-server queues
// for one connection, and the reads did not answer in time. The scan failed at every delivery,
// and no host got an override of that revision (tried: 500 such requests against `arbiter up`).

let arbiter: FanoutArbiter;
let honest: HostPolicyClient;
const log = captureLog("warn");

beforeAll(async () => {
  arbiter = await startFanoutArbiter({
    rules: defaultRules("allow"),
    workers: ["w1"],
    workerConfig: { indexMirrorMaxKeys: 0 },
    workerLogger: log.logger,
  });
  honest = await arbiter.startHost();
}, 60_000);

afterAll(async () => {
  await arbiter?.close();
});

describe("a scan reading an index of large entries from the server", () => {
  it("reads them as fast as they come, and the revision reaches every host", async () => {
    expect((await honest.evaluateStartComponent(componentBody("honest-app"))).permitted).toBe(true);
    const nc = await arbiter.connect("host");
    const extra = `,"pad":"${"x".repeat(800_000)}"`;
    for (let i = 0; i < 120; i++) {
      const text = startComponentText({ requestId: nthRequestId(i), componentId: `large-${i}`, extra });
      expect((await askPolicy(nc, text)).permitted).toBe(true);
    }
    await untilIndexCaughtUp(arbiter.nc, 60_000);

    const revision = await applyRules(arbiter.admin, defaultRules("deny"));
    await untilRevisionReevaluated(arbiter.nc, revision, 60_000);
    await until(() => [...honest.cacheEntries().values()].every((e) => !e.permitted), {
      name: "the honest host's entry revoked",
      timeout: 15_000,
    });
    // At its first delivery: the writes of its changed entries, as large, wait for room too.
    const failed = log.lines().filter((line) => String(line["msg"]).includes("failed on stream message"));
    expect(failed.map((line) => line["err"])).toEqual([]);
  }, 180_000);
});
