import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { askPolicy, nthRequestId, startComponentText } from "./support/crafted-requests.js";
import { untilIndexCaughtUp } from "./support/fanout.js";
import {
  expectDenyReachesHonestHost,
  type ServerReadArbiter,
  startServerReadArbiter,
} from "./support/server-read-scan.js";

// A scan that reads the active index from the server (no mirror, or an index too large for one)
// kept 512 direct gets in flight, whatever the entries weigh: a host's requests of 800 KB for
// distinct components made that some 400 MB asked for at once, far past what nats-server queues
// for one connection, and the reads did not answer in time. The scan failed at every delivery,
// and no host got an override of that revision (tried: 500 such requests against `arbiter up`).

let setup: ServerReadArbiter;

beforeAll(async () => {
  setup = await startServerReadArbiter();
}, 60_000);

afterAll(async () => {
  await setup?.arbiter.close();
});

describe("a scan reading an index of large entries from the server", () => {
  it("reads them as fast as they come, and the revision reaches every host", async () => {
    const nc = await setup.arbiter.connect("host");
    const extra = `,"pad":"${"x".repeat(800_000)}"`;
    for (let i = 0; i < 120; i++) {
      const text = startComponentText({ requestId: nthRequestId(i), componentId: `large-${i}`, extra });
      expect((await askPolicy(nc, text)).permitted).toBe(true);
    }
    await untilIndexCaughtUp(setup.arbiter.nc, 60_000);
    // At its first delivery: the writes of its changed entries, as large, wait for room too.
    await expectDenyReachesHonestHost(setup);
  }, 180_000);
});
