import { Writable } from "node:stream";
import type { HostPolicyClient } from "@arbiter/host";
import { resourceNames } from "@arbiter/protocol";
import { generateKey } from "@arbiter/trust";
import { jetstreamManager } from "@nats-io/jetstream";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { until } from "./harness/index.js";
import { applyRules, componentBody, defaultRules, untilIndexCaughtUp } from "./support/fanout.js";
import { type FanoutArbiter, startFanoutArbiter } from "./support/fanout-setup.js";

// A deployment whose admin's store made the fan-out's consumers but not the expiries stream (made
// by an earlier release): the index goes on, only the expiry of claims is not acted on.

let arbiter: FanoutArbiter;
let client: HostPolicyClient;
const logLines: string[] = [];

beforeAll(async () => {
  arbiter = await startFanoutArbiter({ rules: defaultRules("allow"), workers: [] });
  // Gone before any worker starts (applying rules does not use it).
  await (await jetstreamManager(arbiter.nc)).streams.delete(resourceNames().expiriesStream);
  const sink = new Writable({
    write(chunk, _encoding, done) {
      logLines.push(String(chunk));
      done();
    },
  });
  await arbiter.startWorker("w1", { logger: pino({ level: "warn" }, sink) });
  client = await arbiter.startHost();
}, 60_000);

afterAll(async () => {
  await arbiter?.close();
});

describe("expiry timers without their stream", () => {
  it("index permits with expiring claims all the same, warn, and still override on a rules change", async () => {
    const claims = {
      publicKey: generateKey("M").publicKey,
      issuer: generateKey("A").publicKey,
      issuedAt: "1",
      expiresAt: Math.floor(Date.now() / 1000) + 3600,
      expired: false,
    };
    expect((await client.evaluateStartComponent({ ...componentBody("c"), claims })).permitted).toBe(true);
    await untilIndexCaughtUp(arbiter.nc);
    await until(() => logLines.some((line) => line.includes("expiring claims are not re-evaluated")), {
      name: "the missing stream warned about",
    });
    await applyRules(arbiter.admin, defaultRules("deny"));
    await until(() => [...client.cacheEntries().values()].every((e) => !e.permitted), {
      name: "the cached permit overridden by the rules change",
      timeout: 30_000,
      interval: 50,
    });
  }, 60_000);
});
