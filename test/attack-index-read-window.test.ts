import { activeEntryKey } from "@arbiter/store";
import { generateKey } from "@arbiter/trust";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { until } from "./harness/index.js";
import { askPolicy, FIXTURE_REQUEST, nthRequestId, startComponentText } from "./support/crafted-requests.js";
import { applyRules, defaultRules, untilIndexCaughtUp, untilRevisionReevaluated } from "./support/fanout.js";
import { captureLog } from "./support/log-capture.js";
import {
  expectDenyReachesHonestHost,
  type ServerReadArbiter,
  startServerReadArbiter,
} from "./support/server-read-scan.js";

// A scan that reads the active index from the server sized its window of reads by the largest
// entry read so far. A host names the host key of its requests, so it can choose which of its
// entries come first in the index's key order: small ones first opened the window to 512 reads,
// then its entries of 800 KB were asked for 200 at once, far past what nats-server queues for one
// connection. The server cut the worker off as a slow consumer at every delivery, and no host
// got an override of that revision. A worker's mirror read the bucket so too when it started,
// and scanned from the server for ever after.

const SMALL = 40;
const LARGE = 200;

let setup: ServerReadArbiter;

beforeAll(async () => {
  setup = await startServerReadArbiter();
}, 60_000);

afterAll(async () => {
  await setup?.arbiter.close();
});

/** The host-key part of the index keys of `host`'s entries in the fixture's lattice. */
const hostPart = (host: string) =>
  activeEntryKey({ lattice: FIXTURE_REQUEST.lattice, host, cacheKey: "x" }).split(".")[1]!;

/** Two host keys, the entries of the first before those of the second in the index's key order. */
function orderedHosts(): [string, string] {
  for (;;) {
    const [a, b] = [generateKey("N").publicKey, generateKey("N").publicKey];
    if (hostPart(a) < hostPart(b)) return [a, b];
    if (hostPart(b) < hostPart(a)) return [b, a];
  }
}

describe("a scan reading the index from the server", () => {
  it("keeps its reads within bounds when a host's small entries come before its large ones", async () => {
    const [first, second] = orderedHosts();
    const nc = await setup.arbiter.connect("host");
    const send = async (i: number, host: string, pad: string) => {
      const text = startComponentText({
        requestId: nthRequestId(i),
        componentId: `app-${i}`,
        host,
        extra: `,"pad":"${pad}"`,
      });
      expect((await askPolicy(nc, text)).permitted).toBe(true);
    };
    for (let i = 0; i < SMALL; i++) await send(i, first, "");
    const pad = "x".repeat(800_000);
    // Eight at a time: the worker takes them as fast as one after the other costs.
    for (let i = SMALL; i < SMALL + LARGE; i += 8) {
      await Promise.all(Array.from({ length: 8 }, (_, j) => send(i + j, second, pad)));
    }
    await untilIndexCaughtUp(setup.arbiter.nc, 60_000);
    await expectDenyReachesHonestHost(setup);
  }, 180_000);

  it("and a worker that starts after them reads them into its mirror, which its scans then read", async () => {
    const log = captureLog("info");
    await setup.arbiter.startWorker("w2", { logger: log.logger, config: { indexMirrorMaxKeys: 200_000 } });
    await setup.arbiter.workers[0]!.stop();
    const revision = await applyRules(setup.arbiter.admin, defaultRules("allow"));
    await untilRevisionReevaluated(setup.arbiter.nc, revision, 60_000);
    await until(() => [...setup.honest.cacheEntries().values()].every((e) => e.permitted), {
      name: "the honest host's entry permitted again",
      timeout: 15_000,
    });
    const said = log.lines().map((line) => String(line["msg"]));
    expect(said.filter((msg) => /failed on stream message|read the index from the server/.test(msg))).toEqual(
      [],
    );
    const scanned = log
      .lines()
      .find((line) => line["msg"] === "revision re-evaluated against the active index");
    expect(scanned?.["mirror"]).toMatchObject({
      views: 1,
      refused: 0,
      reloads: 1,
      gaps: 0,
      connectionEvents: 0,
    });
  }, 120_000);
});
