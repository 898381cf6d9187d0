import { DEFAULT_CHANGES_TOPIC, resourceNames } from "@arbiter/protocol";
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

// A host chooses how large its requests are, and a scan holds each changed entry of a chunk with
// its records until they are acknowledged: counted alone, a chunk of a host's 860 KB requests held
// a gigabyte or two. A chunk is now written once its requests reach 8 MiB, whatever its count. And
// a scan held every changed entry for the index until its last override was out (up to 16,384 of
// them): read from the server, nothing else holds them. They are now written once they hold 64 MiB.

const REQUESTS = 100;
const PAD = 700_000;

let arbiter: FanoutArbiter;

beforeAll(async () => {
  arbiter = await startFanoutArbiter({ workers: ["w1"] });
}, 60_000);

afterAll(async () => {
  await arbiter?.close();
});

/** The number of records of each revocation batch message stored, in order. */
async function revocationBatchSizes(): Promise<number[]> {
  const names = resourceNames();
  const jsm = await jetstreamManager(arbiter.nc);
  const last = (await jsm.streams.info(names.revocationsStream)).state.last_seq;
  const sizes: number[] = [];
  for (let seq = 1; seq <= last; seq++) {
    const m = await jsm.streams.getMessage(names.revocationsStream, { seq });
    const body = m?.json<{ revocations?: unknown[] }>();
    sizes.push(body?.revocations?.length ?? 1);
  }
  return sizes;
}

describe("a scan over a host's large requests", () => {
  it("writes its changed entries in chunks of at most 8 MiB of requests, and into the index once they hold 64 MiB", async () => {
    const host = await arbiter.startHost();
    const pad = "x".repeat(PAD);
    for (let i = 0; i < REQUESTS; i++) {
      const answer = await host.evaluateStartComponent({ ...componentBody(`big${i}`), annotations: { pad } });
      expect(answer.permitted).toBe(false);
    }
    await untilIndexCaughtUp(arbiter.nc);
    // The worker's overrides and index writes, in the order it sent them (one connection).
    const sent: ("override" | "entry")[] = [];
    const watch = await arbiter.connect("admin");
    const names = resourceNames();
    watch.subscribe(DEFAULT_CHANGES_TOPIC, { callback: () => void sent.push("override") });
    watch.subscribe(`$KV.${names.activeBucket}.e.>`, { callback: () => void sent.push("entry") });
    await watch.flush();
    const revision = await applyRules(arbiter.admin, defaultRules("allow"));
    await untilRevisionReevaluated(arbiter.nc, revision, 60_000);
    await until(() => [...host.cacheEntries().values()].every((e) => e.permitted), {
      name: "every cached denial permitted",
      timeout: 30_000,
    });
    const sizes = await revocationBatchSizes();
    expect(sizes.reduce((a, b) => a + b, 0)).toBe(REQUESTS);
    // 8 MiB of 700 KB requests: 12 a chunk at most (32 before, the ramp's first chunk).
    expect(Math.max(...sizes)).toBeLessThanOrEqual(Math.ceil((8 * 1024 * 1024) / PAD));
    await until(() => sent.filter((s) => s === "entry").length === REQUESTS, {
      name: "every changed entry written",
      timeout: 30_000,
    });
    // 70 MB of requests: the first entries are written before the last overrides go out.
    expect(sent.filter((s) => s === "override")).toHaveLength(REQUESTS);
    expect(sent.indexOf("entry")).toBeLessThan(sent.lastIndexOf("override"));
  }, 120_000);
});
