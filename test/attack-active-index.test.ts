import type { HostPolicyClient } from "@arbiter/host";
import { PolicyOverrideV1, resourceNames } from "@arbiter/protocol";
import { decisionBatchFromTexts, openJetStreamActiveIndex, openJetStreamStore } from "@arbiter/store";
import { createSigner, generateKey, splitSealedJson } from "@arbiter/trust";
import type { NatsConnection } from "@nats-io/nats-core";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import {
  applyRules,
  componentBody,
  defaultRules,
  untilIndexCaughtUp,
  untilRevisionReevaluated,
} from "./support/fanout.js";
import { type FanoutArbiter, startFanoutArbiter } from "./support/fanout-setup.js";

// An attacker holding a host's credentials against the active-decision index: it can put bytes
// where its permissions let it, choose any requestId and any host key in its requests, and read
// other hosts' request ids from the answers on `_INBOX.>`. Overrides are heard by every host and
// applied by the host that generated their requestId, to the cache entry of that request.

let arbiter: FanoutArbiter;
let attackerNc: NatsConnection;

beforeAll(async () => {
  arbiter = await startFanoutArbiter({ workers: ["w1"], hearChanges: true });
  attackerNc = await arbiter.connect("host");
}, 60_000);

afterAll(async () => {
  await arbiter?.close();
});

/** Every override heard on the changes topic so far, once the listener has caught up. */
async function heard(): Promise<PolicyOverrideV1[]> {
  await arbiter.flushHeard();
  return arbiter.heard.map((text) => PolicyOverrideV1.parse(JSON.parse(text)));
}

const victimHost = (publicKey = generateKey("N").publicKey): Promise<HostPolicyClient> =>
  arbiter.startHost({}, publicKey);

/** A request as the attacker writes it: any requestId, any host key, any body. */
async function attackerAsks(requestId: string, hostKey: string, body: object): Promise<void> {
  const request = {
    requestId,
    kind: "startComponent",
    version: "v1",
    request: body,
    host: { publicKey: hostKey, lattice: "default", labels: {} },
  };
  await attackerNc.request("wasmcloud.policy", JSON.stringify(request), { timeout: 5000 });
}

describe("attacks on the active-decision index", () => {
  it("a decision message not sealed by an enrolled worker key never enters the index, so no override follows it", async () => {
    const index = await openJetStreamActiveIndex(arbiter.nc);
    const victim = await victimHost();
    await victim.evaluateStartComponent(componentBody("genuine"));
    const genuine = [];
    for await (const stored of arbiter.store.decisions.read()) genuine.push(stored.text);
    const last = JSON.parse(genuine.at(-1)!) as Record<string, unknown> & { host: string; cacheKey: string };
    // The attacker's own worker-like key, never enrolled, signs a permitted copy for a made-up entry.
    const forgedKey = createSigner(generateKey("N").seed);
    const forged = {
      ...JSON.parse(splitSealedJson(genuine.at(-1)!)!.body),
      decisionId: "01FORGEDFORGEDFORGEDFORGED",
      requestId: "forged-request-id",
      cacheKey: "startComponent:forged_ghcr.io/example/forged:0.1.0",
      permitted: false,
      worker: { id: "evil", publicKey: forgedKey.publicKey },
    };
    const attackerStore = await openJetStreamStore(attackerNc, { create: false });
    await attackerStore.decisions.append(
      decisionBatchFromTexts([{ decisionId: forged.decisionId, text: JSON.stringify(forged) }], forgedKey),
    );
    // And a record with no batch signature at all.
    attackerNc.publish(
      resourceNames().decisionsSubject,
      JSON.stringify({ ...forged, decisionId: "01UNSIGNEDUNSIGNEDUNSIGNED" }),
    );
    await attackerNc.flush();
    await untilIndexCaughtUp(arbiter.nc);
    expect(await index.get({ lattice: "default", host: last.host, cacheKey: last.cacheKey })).toMatchObject({
      permitted: false,
    });
    expect(await index.get({ lattice: "default", host: last.host, cacheKey: forged.cacheKey })).toBeNull();
    const revision = await applyRules(arbiter.admin, defaultRules("allow"));
    await untilRevisionReevaluated(arbiter.nc, revision);
    const overrides = await heard();
    expect(overrides.map((o) => o.requestId)).not.toContain("forged-request-id");
    expect(overrides.map((o) => o.requestId)).toContain(victim.sentRequestIds()[0]);
    await attackerStore.close();
  }, 60_000);

  beforeEach(async () => {
    await applyRules(arbiter.admin, defaultRules("deny"));
  });

  it("another host's requestId reused for the attacker's own request does not make Arbiter send that outcome under the victim's id", async () => {
    const victim = await victimHost();
    await victim.evaluateStartComponent(componentBody("victim-app"));
    const [victimId] = victim.sentRequestIds();
    await untilIndexCaughtUp(arbiter.nc);
    // Read off the answers on _INBOX.>, reused with the attacker's key for a component the new rules permit.
    await attackerAsks(victimId!, generateKey("N").publicKey, componentBody("attacker-app"));
    const revision = await applyRules(
      arbiter.admin,
      defaultRules("deny", [{ id: "attacker-app", effect: "allow", when: 'subject.id == "attacker-app"' }]),
    );
    await untilRevisionReevaluated(arbiter.nc, revision);
    expect((await heard()).filter((o) => o.requestId === victimId && o.permitted)).toEqual([]);
    expect([...victim.cacheEntries().values()]).toMatchObject([{ requestId: victimId, permitted: false }]);
    expect(victim.stats().overridesApplied).toBe(0);
  }, 60_000);

  it("the victim's requestId, host key and cache key with other claims do not replace what the victim cached", async () => {
    const hostKey = generateKey("N").publicKey;
    const victim = await victimHost(hostKey);
    await victim.evaluateStartComponent(componentBody("claimed-app"));
    const victimId = victim.sentRequestIds().at(-1)!;
    await untilIndexCaughtUp(arbiter.nc);
    const trustedIssuer = generateKey("A").publicKey;
    await attackerAsks(victimId, hostKey, {
      ...componentBody("claimed-app"),
      claims: {
        publicKey: generateKey("M").publicKey,
        issuer: trustedIssuer,
        issuedAt: "1700000000",
        expiresAt: null,
        expired: false,
      },
    });
    const revision = await applyRules(
      arbiter.admin,
      defaultRules("deny", [
        { id: "trusted", effect: "allow", when: `claims != null && claims.issuer == "${trustedIssuer}"` },
      ]),
    );
    await untilRevisionReevaluated(arbiter.nc, revision);
    expect((await heard()).filter((o) => o.requestId === victimId && o.permitted)).toEqual([]);
    expect(victim.cacheEntries().get(victim.requestKeys().get(victimId)!)).toMatchObject({
      permitted: false,
    });
  }, 60_000);
});
