import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { until } from "./harness/index.js";
import { type SingleNodeArbiter, startSingleNodeArbiter } from "./support/arbiter.js";
import { fixtureJson } from "./support/fixtures.js";
import { type CapturedLog, captureLog } from "./support/log-capture.js";

// Any host can publish bad requests, requests without a reply subject and requests with a refused
// reply subject as fast as its connection allows. The worker must count every one, but its log
// must not grow with the attacker's rate: each kind is one warning per interval, with the true count.

const encoder = new TextEncoder();
const PER_KIND = 2000;
const INTERVAL_MS = 1000;

describe("a flood of requests the worker refuses", () => {
  let arbiter: SingleNodeArbiter;
  let log: CapturedLog;

  beforeAll(async () => {
    log = captureLog();
    arbiter = await startSingleNodeArbiter({}, { logger: log.logger });
  });

  afterAll(async () => {
    await arbiter?.stop();
  });

  it("is logged once a second per kind, each line with the true count since the last", async () => {
    const started = Date.now();
    const valid = JSON.stringify(fixtureJson("start-provider"));
    for (let i = 0; i < PER_KIND; i++) {
      const { nc } = arbiter;
      nc.publish("wasmcloud.policy", encoder.encode(`{"requestId":"bad-${i}","kind":"nope"}`), {
        reply: `_INBOX.flood.${i}`,
      });
      nc.publish("wasmcloud.policy", encoder.encode(`{"requestId":"noreply-${i}"}`));
      nc.publish("wasmcloud.policy", encoder.encode(valid), { reply: "wasmcloud.policy.changes" });
      if (i % 200 === 0) await nc.flush();
    }
    await until(
      () => {
        const s = arbiter.worker.stats();
        return s.rejected === PER_KIND && s.unanswerable === PER_KIND && s.refusedReply === PER_KIND;
      },
      { name: "every flooded request counted", timeout: 60_000 },
    );
    await arbiter.worker.stop();
    const elapsedMs = Date.now() - started;

    const lines = log.lines().filter((l) => l["level"] === 40);
    const mostLines = Math.ceil(elapsedMs / INTERVAL_MS) + 2;
    for (const field of ["rejected", "unanswerable", "refused"]) {
      const warnings = lines.filter((l) => typeof l[field] === "number");
      expect(warnings.length, `${field} warnings`).toBeGreaterThan(0);
      expect(warnings.length, `${field} warnings in ${elapsedMs} ms`).toBeLessThanOrEqual(mostLines);
      expect(
        warnings.reduce((sum, l) => sum + Number(l[field]), 0),
        `${field} reported`,
      ).toBe(PER_KIND);
    }
    expect(lines.length, "warnings in all").toBeLessThanOrEqual(3 * mostLines);
  });
});
