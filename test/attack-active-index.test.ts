import type { HostPolicyClient } from "@arbiter/host";
import { PolicyOverrideV1, resourceNames } from "@arbiter/protocol";
import {
  type ArbiterStore,
  createRulesAdmin,
  decisionBatchFromTexts,
  openJetStreamActiveIndex,
  openJetStreamStore,
  type RulesAdmin,
} from "@arbiter/store";
import { createSigner, generateKey, splitSealedJson } from "@arbiter/trust";
import { createWorker, type Worker } from "@arbiter/worker";
import type { NatsConnection } from "@nats-io/nats-core";
import { pino } from "pino";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { connectTo, type NatsServerProcess, startNatsServer } from "./harness/index.js";
import { enrolledWorkerSeed } from "./support/arbiter.js";
import {
  applyRules,
  componentBody,
  defaultRules,
  startHost,
  untilIndexCaughtUp,
  untilRevisionReevaluated,
} from "./support/fanout.js";

// An attacker holding a host's credentials against the active-decision index: it can put bytes
// where its permissions let it, choose any requestId and any host key in its requests, and read
// other hosts' request ids from the answers on `_INBOX.>`. Overrides are heard by every host and
// applied by the host that generated their requestId, to the cache entry of that request.

let server: NatsServerProcess;
let nc: NatsConnection;
let attackerNc: NatsConnection;
let store: ArbiterStore;
let admin: RulesAdmin;
let worker: Worker;
const connections: NatsConnection[] = [];
const heard: PolicyOverrideV1[] = [];

beforeAll(async () => {
  server = await startNatsServer();
  nc = await connectTo(server.url);
  attackerNc = await connectTo(server.url);
  store = await openJetStreamStore(nc);
  const signer = createSigner(generateKey("O").seed);
  admin = createRulesAdmin({ store, signer });
  await applyRules(admin, defaultRules("deny"));
  const workerNc = await connectTo(server.url);
  connections.push(workerNc);
  worker = createWorker({
    nc: workerNc,
    logger: pino({ level: "silent" }),
    config: { adminKeys: [signer.publicKey], workerSeed: await enrolledWorkerSeed(admin) },
  });
  await worker.start();
  nc.subscribe("wasmcloud.policy.changes", {
    callback: (_e, m) => {
      heard.push(PolicyOverrideV1.parse(m.json()));
    },
  });
  await nc.flush();
}, 60_000);

afterAll(async () => {
  await worker?.stop();
  for (const c of connections) await c.close();
  await attackerNc?.close();
  await store?.close();
  await nc?.close();
  await server?.stop();
});

async function victimHost(publicKey = generateKey("N").publicKey): Promise<HostPolicyClient> {
  const hostNc = await connectTo(server.url);
  connections.push(hostNc);
  return startHost(hostNc, {}, publicKey);
}

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
    const index = await openJetStreamActiveIndex(nc);
    const victim = await victimHost();
    await victim.evaluateStartComponent(componentBody("genuine"));
    const genuine = [];
    for await (const stored of store.decisions.read()) genuine.push(stored.text);
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
    await untilIndexCaughtUp(nc);
    expect(await index.get({ lattice: "default", host: last.host, cacheKey: last.cacheKey })).toMatchObject({
      permitted: false,
    });
    expect(await index.get({ lattice: "default", host: last.host, cacheKey: forged.cacheKey })).toBeNull();
    const revision = await applyRules(admin, defaultRules("allow"));
    await untilRevisionReevaluated(nc, revision);
    await nc.flush();
    expect(heard.map((o) => o.requestId)).not.toContain("forged-request-id");
    expect(heard.map((o) => o.requestId)).toContain(victim.sentRequestIds()[0]);
    await attackerStore.close();
  }, 60_000);

  beforeEach(async () => {
    await applyRules(admin, defaultRules("deny"));
  });

  it("another host's requestId reused for the attacker's own request does not make Arbiter send that outcome under the victim's id", async () => {
    const victim = await victimHost();
    await victim.evaluateStartComponent(componentBody("victim-app"));
    const [victimId] = victim.sentRequestIds();
    await untilIndexCaughtUp(nc);
    // Read off the answers on _INBOX.>, reused with the attacker's key for a component the new rules permit.
    await attackerAsks(victimId!, generateKey("N").publicKey, componentBody("attacker-app"));
    const revision = await applyRules(
      admin,
      defaultRules("deny", [{ id: "attacker-app", effect: "allow", when: 'subject.id == "attacker-app"' }]),
    );
    await untilRevisionReevaluated(nc, revision);
    await nc.flush();
    expect(heard.filter((o) => o.requestId === victimId && o.permitted)).toEqual([]);
    expect([...victim.cacheEntries().values()]).toMatchObject([{ requestId: victimId, permitted: false }]);
    expect(victim.stats().overridesApplied).toBe(0);
  }, 60_000);

  it("the victim's requestId, host key and cache key with other claims do not replace what the victim cached", async () => {
    const hostKey = generateKey("N").publicKey;
    const victim = await victimHost(hostKey);
    await victim.evaluateStartComponent(componentBody("claimed-app"));
    const victimId = victim.sentRequestIds().at(-1)!;
    await untilIndexCaughtUp(nc);
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
      admin,
      defaultRules("deny", [
        { id: "trusted", effect: "allow", when: `claims != null && claims.issuer == "${trustedIssuer}"` },
      ]),
    );
    await untilRevisionReevaluated(nc, revision);
    await nc.flush();
    expect(heard.filter((o) => o.requestId === victimId && o.permitted)).toEqual([]);
    expect(victim.cacheEntries().get(victim.requestKeys().get(victimId)!)).toMatchObject({
      permitted: false,
    });
  }, 60_000);
});
