import { DecisionV1, resourceNames } from "@arbiter/protocol";
import type { Msg } from "@nats-io/nats-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectTo, until } from "./harness/index.js";
import { type SingleNodeArbiter, startSingleNodeArbiter } from "./support/arbiter.js";
import { fixtureJson } from "./support/fixtures.js";

// A host may subscribe to `_INBOX.>` (the shipped permissions allow it), and chooses the reply
// subject of what it publishes. A reply subject with a wildcard token is not one inbox: an answer
// published there reaches every subscription the wildcard matches, including the `_INBOX.<id>.*`
// request subscriptions of other clients and of Arbiter itself.

const encoder = new TextEncoder();
const names = resourceNames();

function request(requestId: string): Uint8Array {
  return encoder.encode(JSON.stringify({ ...fixtureJson("start-provider"), requestId }));
}

describe("reply subjects that are not one inbox", () => {
  let arbiter: SingleNodeArbiter;

  beforeAll(async () => {
    arbiter = await startSingleNodeArbiter();
  });

  afterAll(async () => {
    await arbiter?.stop();
  });

  it("are refused unanswered and recorded: wildcard tokens, empty tokens, a bare prefix", async () => {
    await using listener = await connectTo(arbiter.server.url);
    const heard: Msg[] = [];
    // What a wildcard reply would reach: an `_INBOX.>` spy, a client's request mux, another's.
    for (const subject of ["_INBOX.>", "_INBOX.victim.*", "_INBOX.*.*"]) {
      listener.subscribe(subject, {
        callback: (_err, msg) => {
          const text = msg.string();
          // An answer lands under the inbox subject itself; the worker's own JetStream deliveries
          // (the fan-out's consumers, on this open server's shared `_INBOX.` prefix) keep their stream subject.
          if (!msg.subject.startsWith("_INBOX.")) return;
          if (text.includes('"requestId":"wild-') || text.includes('"publicKey"')) heard.push(msg);
        },
      });
    }
    await listener.flush();
    const replies = [
      "_INBOX.>",
      "_INBOX.victim.*",
      "_INBOX.*.*",
      "_INBOX.*",
      "_INBOX..x",
      "_INBOX.x.",
      "_INBOX.",
    ];
    for (const [i, reply] of replies.entries()) {
      arbiter.nc.publish("wasmcloud.policy", request(`wild-${i}`), { reply });
    }
    // The status responder answers inbox subjects only too: one request to a wildcard reply would
    // otherwise broadcast every worker's status to every inbox it matches.
    for (const reply of replies) arbiter.nc.publish(names.statusSubject, new Uint8Array(), { reply });
    await until(() => arbiter.worker.stats().refusedReply === replies.length, {
      name: "every wildcard or empty-token reply refused",
    });
    // A real request on a real inbox after them: once it is answered, any answer to the others would have arrived.
    expect((await arbiter.ask(request("real-1"))).permitted).toBe(true);
    await listener.flush();
    expect(heard.map((m) => m.subject)).toEqual([]);
    expect(arbiter.worker.stats()).toMatchObject({
      refusedReply: replies.length,
      decisions: replies.length + 1,
    });

    const recorded: DecisionV1[] = [];
    for await (const stored of arbiter.store.decisions.read()) {
      recorded.push(DecisionV1.parse(JSON.parse(stored.text)));
    }
    for (const i of replies.keys()) {
      expect(recorded.find((d) => d.requestId === `wild-${i}`)).toMatchObject({
        permitted: false,
        rejection: expect.stringMatching(/not an inbox/),
      });
    }
  });
});
