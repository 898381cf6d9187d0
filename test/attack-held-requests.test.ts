import { resourceNames } from "@arbiter/protocol";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectTo, until } from "./harness/index.js";
import { type SingleNodeArbiter, startSingleNodeArbiter } from "./support/arbiter.js";
import { fixtureBytes, fixtureJson } from "./support/fixtures.js";
import { stallDecisionLog } from "./support/stalled-log.js";

// While the decision log is slow or silent, every decided request waits in the worker for its
// acknowledgement, holding its message (up to max_payload) and its record. A host flooding the
// policy topic then would grow the worker's memory without bound unless those requests count
// against `maxQueuedRequests` like the ones still waiting to be decided.

const names = resourceNames();
const LIMIT = 10;
const SENT = 200;

describe("requests waiting for their record", () => {
  let arbiter: SingleNodeArbiter;

  beforeAll(async () => {
    arbiter = await startSingleNodeArbiter({ maxQueuedRequests: LIMIT, ackTimeoutMs: 60_000 });
  });

  afterAll(async () => {
    await arbiter?.stop();
  });

  it("count against maxQueuedRequests: a flood during a silent decision log is shed, not held", async () => {
    const { worker } = arbiter;
    // The decision log goes silent: every publish is held, none acknowledged.
    await using stall = await stallDecisionLog(arbiter);
    const { stalled } = stall;

    await using attacker = await connectTo(arbiter.server.url);
    const request = new TextEncoder().encode(JSON.stringify(fixtureJson("start-provider")));
    for (let i = 0; i < SENT; i++)
      attacker.publish("wasmcloud.policy", request, { reply: `_INBOX.flood.${i}` });
    await attacker.flush();
    await until(() => worker.stats().shed === SENT - LIMIT, {
      name: `${SENT - LIMIT} of ${SENT} requests shed while ${LIMIT} wait for their record`,
    });
    await until(() => stalled.reduce((n, m) => n + m.string().split("\n").length, 0) === LIMIT, {
      name: `the ${LIMIT} held decisions published`,
    });

    // The log refuses what it held; the worker lets those requests go and serves again.
    for (const msg of stalled) {
      msg.respond(
        JSON.stringify({
          error: { code: 503, description: "stalled" },
          stream: names.decisionsStream,
          seq: 0,
        }),
      );
    }
    await until(() => worker.stats().logFailures === LIMIT, { name: "the held requests given up" });
    await stall.resume();
    expect((await arbiter.ask(fixtureBytes("start-provider"))).permitted).toBe(true);
    expect(worker.stats()).toMatchObject({ shed: SENT - LIMIT, logFailures: LIMIT, decisions: 1 });
  });
});
