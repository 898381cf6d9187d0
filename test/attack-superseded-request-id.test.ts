import { PolicyOverrideV1 } from "@arbiter/protocol";
import { type ActiveIndex, openJetStreamActiveIndex } from "@arbiter/store";
import { generateKey } from "@arbiter/trust";
import type { NatsConnection } from "@nats-io/nats-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  applyRules,
  componentBody,
  defaultRules,
  untilIndexCaughtUp,
  untilRevisionReevaluated,
} from "./support/fanout.js";
import { type FanoutArbiter, startFanoutArbiter } from "./support/fanout-setup.js";

// A host asks for one cache key more than once when its requests overlap (a burst of invocations
// of a component not yet cached, two starts of one component): each request is cached on its
// answer and its id mapped to the key, so an override under any of those ids rewrites the entry.
// The index holds the latest of them; the earlier ids stayed claimed by that very entry, and a
// claim held by the entry was taken as the entry's own, so the attacker, reading an earlier id off
// the answers on `_INBOX.>`, sent it again with the victim's host and cache key and claims of its
// own: the index took that request, and the next rules change sent under the victim's id the
// outcome of the attacker's claims, which the victim applied.

let arbiter: FanoutArbiter;
let attackerNc: NatsConnection;
let index: ActiveIndex;

beforeAll(async () => {
  arbiter = await startFanoutArbiter({ workers: ["w1"], hearChanges: true });
  attackerNc = await arbiter.connect("host");
  index = await openJetStreamActiveIndex(arbiter.nc, { create: false });
}, 60_000);

afterAll(async () => {
  await index?.close();
  await arbiter?.close();
});

describe("request ids a host used for one cache key", () => {
  it("an earlier one, sent again with the victim's host and cache key and other claims, does not replace what the victim cached", async () => {
    const hostKey = generateKey("N").publicKey;
    const victim = await arbiter.startHost({}, hostKey);
    const body = componentBody("overlapping-app");
    await Promise.all([victim.evaluateStartComponent(body), victim.evaluateStartComponent(body)]);
    const ids = victim.sentRequestIds();
    expect(ids).toHaveLength(2);
    expect(new Set(ids.map((id) => victim.requestKeys().get(id))).size).toBe(1);
    await untilIndexCaughtUp(arbiter.nc);
    const cacheKey = victim.requestKeys().get(ids[0]!)!;
    const held = await index.get({ lattice: "default", host: hostKey, cacheKey });
    const earlier = ids.find((id) => id !== held?.requestId)!;
    expect(earlier).toBeDefined();

    const trustedIssuer = generateKey("A").publicKey;
    const forged = {
      requestId: earlier,
      kind: "startComponent",
      version: "v1",
      request: {
        ...body,
        claims: {
          publicKey: generateKey("M").publicKey,
          issuer: trustedIssuer,
          issuedAt: "1700000000",
          expiresAt: null,
          expired: false,
        },
      },
      host: { publicKey: hostKey, lattice: "default", labels: {} },
    };
    await attackerNc.request("wasmcloud.policy", JSON.stringify(forged), { timeout: 5000 });
    await untilIndexCaughtUp(arbiter.nc);
    const revision = await applyRules(
      arbiter.admin,
      defaultRules("deny", [
        { id: "trusted", effect: "allow", when: `claims != null && claims.issuer == "${trustedIssuer}"` },
      ]),
    );
    await untilRevisionReevaluated(arbiter.nc, revision);
    await arbiter.flushHeard();
    const overrides = arbiter.heard.map((text) => PolicyOverrideV1.parse(JSON.parse(text)));
    expect(overrides.filter((o) => ids.includes(o.requestId) && o.permitted)).toEqual([]);
    expect(victim.cacheEntries().get(cacheKey)).toMatchObject({ permitted: false });
    expect(victim.stats().overridesApplied).toBe(0);
  }, 60_000);
});
