import { DecisionV1, PolicyResponseV1 } from "@arbiter/protocol";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectTo, until } from "./harness/index.js";
import { type SingleNodeArbiter, startSingleNodeArbiter } from "./support/arbiter.js";
import { fixtureJson } from "./support/fixtures.js";

// NATS does not bind a reply subject to the client that publishes it, and a wasmCloud host takes
// the first answer on its request inbox whatever its requestId. A host that predicts another
// host's next inbox (async-nats numbers inboxes with a fixed increment, and the answers a host
// can see on `_INBOX.>` give the numbers away) asks, again and again, for something the rules
// permit with that inbox as its reply subject. Were every request answered, one of those answers
// would be on the victim's inbox while the victim's own request for something denied is pending:
// the victim would cache a grant the rules never gave it.

const encoder = new TextEncoder();
const PREDICTED = "_INBOX.victimmux0000000000.Yz3kQ9aB";
const STREAM = 20;

function request(fixture: string, requestId: string): Uint8Array {
  return encoder.encode(JSON.stringify({ ...fixtureJson(fixture), requestId }));
}

describe("answers steered into another host's inbox", () => {
  let arbiter: SingleNodeArbiter;

  beforeAll(async () => {
    arbiter = await startSingleNodeArbiter();
  });

  afterAll(async () => {
    await arbiter?.stop();
  });

  it("reach an inbox once at most: the victim never hears a grant it did not ask for", async () => {
    const { worker } = arbiter;
    await using attacker = await connectTo(arbiter.server.url);
    await using victim = await connectTo(arbiter.server.url);
    const recorded = () => worker.stats().decisions;
    const attack = (from: number) => {
      for (let i = from; i < from + STREAM; i++) {
        attacker.publish("wasmcloud.policy", request("start-provider", `attack-${i}`), { reply: PREDICTED });
      }
    };

    // The attacker's stream of permitted requests starts before the victim asks. The one answer
    // the predicted inbox may get goes out before the victim listens there (an answer follows its
    // record, so the record alone does not say it was sent).
    const beforeVictim: string[] = [];
    attacker.subscribe(PREDICTED, {
      callback: (_err, msg) => {
        beforeVictim.push(msg.string());
      },
    });
    await attacker.flush();
    attack(0);
    await attacker.flush();
    await until(() => recorded() === STREAM, { name: "the first part of the attacker's stream recorded" });
    await until(() => beforeVictim.length === 1, { name: "the predicted inbox's one answer delivered" });

    // The victim's request for a component the rules deny is pending on that inbox; the stream goes on around it.
    const heard: PolicyResponseV1[] = [];
    victim.subscribe(PREDICTED, {
      callback: (_err, msg) => {
        heard.push(PolicyResponseV1.parse(JSON.parse(msg.string())));
      },
    });
    await victim.flush();
    attack(STREAM);
    await attacker.flush();
    victim.publish("wasmcloud.policy", request("start-component", "victim-1"), { reply: PREDICTED });
    await victim.flush();
    attack(2 * STREAM);
    await attacker.flush();
    await until(() => recorded() === 3 * STREAM + 1, { name: "every request recorded" });
    // The worker answers in order on one connection: the victim's next answer comes after any to the predicted inbox.
    const next = await victim.request("wasmcloud.policy", request("start-component", "victim-2"), {
      timeout: 5000,
    });
    expect(PolicyResponseV1.parse(JSON.parse(next.string()))).toMatchObject({
      requestId: "victim-2",
      permitted: false,
    });

    expect(heard.filter((answer) => answer.permitted)).toEqual([]);
    expect(worker.stats().refusedReply).toBe(3 * STREAM);
    const refusals: DecisionV1[] = [];
    for await (const stored of arbiter.store.decisions.read()) {
      const decision = DecisionV1.parse(JSON.parse(stored.text));
      if (decision.rejection !== null) refusals.push(decision);
    }
    expect(refusals).toHaveLength(3 * STREAM);
    for (const refusal of refusals) expect(refusal.rejection).toMatch(/answered already/);
    expect(refusals.map((r) => r.requestId)).toContain("victim-1");
  });
});
