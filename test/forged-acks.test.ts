import { resourceNames } from "@arbiter/protocol";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectTo, until } from "./harness/index.js";
import { type SingleNodeArbiter, startSingleNodeArbiter } from "./support/arbiter.js";
import { fixtureBytes } from "./support/fixtures.js";
import { stallDecisionLog } from "./support/stalled-log.js";

// An attacker who can read and publish to `_INBOX.>` (the permissions that prevent it are another
// layer) learns the worker's acknowledgement subjects from the real acknowledgements it sees, and
// floods forged acknowledgements to the subjects that would come next. While JetStream holds the
// next decision unacknowledged, a forgery that matched would make the worker answer without a record.

const names = resourceNames();

/** Asks once; null when no answer comes within 2.5 s. */
async function askOrNull(arbiter: SingleNodeArbiter): Promise<string | null> {
  try {
    return (
      await arbiter.nc.request("wasmcloud.policy", fixtureBytes("start-provider"), { timeout: 2500 })
    ).string();
  } catch {
    return null;
  }
}

describe("forged JetStream acknowledgements", () => {
  let arbiter: SingleNodeArbiter;

  beforeAll(async () => {
    arbiter = await startSingleNodeArbiter({ ackTimeoutMs: 1500 });
  });

  afterAll(async () => {
    await arbiter?.stop();
  });

  it("cannot make the worker answer a decision JetStream has not stored", async () => {
    await using attacker = await connectTo(arbiter.server.url);
    const seenAcks: string[] = [];
    const spy = attacker.subscribe("_INBOX.>", {
      callback: (_err, msg) => {
        if (msg.string().includes(`"stream":"${names.decisionsStream}"`)) seenAcks.push(msg.subject);
      },
    });
    await attacker.flush();
    expect((await arbiter.ask(fixtureBytes("start-provider"))).permitted).toBe(true);
    await until(() => seenAcks.length > 0, { name: "a real acknowledgement seen by the attacker" });

    // JetStream stalls: the worker publishes the next decision and hears nothing back.
    await using stall = await stallDecisionLog(arbiter);
    const { stalled, subscription: silent } = stall;

    // Forge acknowledgements for every token a counter or a short guess would give.
    const seen = seenAcks.at(-1)!;
    const prefix = seen.slice(0, seen.lastIndexOf("."));
    const last = Number.parseInt(seen.slice(seen.lastIndexOf(".") + 1), 36);
    const guesses = Array.from(
      { length: 64 },
      (_, i) => `${prefix}.${(Number.isNaN(last) ? i : last + 1 + i).toString(36)}`,
    );
    let forging = true;
    const forge = (async () => {
      let seq = 1_000;
      while (forging) {
        for (const subject of guesses)
          attacker.publish(subject, JSON.stringify({ stream: names.decisionsStream, seq: seq++ }));
        await attacker.flush();
      }
    })();

    const answer = askOrNull(arbiter);
    await until(() => stalled.length > 0, { name: "the decision published into the stall" });
    expect(await answer).toBeNull();
    forging = false;
    await forge;
    expect(arbiter.worker.stats()).toMatchObject({ decisions: 1, logFailures: 1 });

    // A responder on the decision subject that acknowledges for another stream is not believed.
    silent.unsubscribe();
    const wrongStream = stall.nc.subscribe(names.decisionsSubject, {
      callback: (_err, msg) => {
        msg.respond(JSON.stringify({ stream: "OTHER", seq: 7 }));
      },
    });
    await stall.nc.flush();
    expect(await askOrNull(arbiter)).toBeNull();
    expect(arbiter.worker.stats()).toMatchObject({ decisions: 1, logFailures: 2 });
    expect(arbiter.worker.health.reason).toMatch(/stream "OTHER"/);
    wrongStream.unsubscribe();
    spy.unsubscribe();
  });
});
