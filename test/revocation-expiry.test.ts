import type { HostPolicyClient } from "@arbiter/host";
import { type ClaimsV1, DecisionV1, PolicyOverrideV1, resourceNames } from "@arbiter/protocol";
import { expiryTimerSubject, openJetStreamRevocationLog } from "@arbiter/store";
import { generateKey } from "@arbiter/trust";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { until } from "./harness/index.js";
import { componentBody, defaultRules, untilIndexCaughtUp } from "./support/fanout.js";
import { type FanoutArbiter, startFanoutArbiter } from "./support/fanout-setup.js";

// Claims that expire revoke themselves, under the shipped permissions: two workers share the
// expiry timers (messages of ARBITER_EXPIRIES held through the admin-made consumer), hosts are
// reference host clients in the LATTICE account, no rules change happens.

const names = resourceNames();
const EXPIRED = "component claims have expired";
const RULES = defaultRules("allow", [
  { id: "no-expired-claims", effect: "deny", when: "claims != null && claims.expired", message: EXPIRED },
  { id: "never", effect: "deny", when: 'subject.id == "never"', message: "never this one" },
]);

let arbiter: FanoutArbiter;
/** A worker's connection, for what a stolen worker credential may do. */
let workerNc: NatsConnection;
let revision: number;

const host = (publicKey?: string) => arbiter.startHost({}, publicKey);

/** Claims expiring `inSeconds` from now (whole seconds, as a host reports them). */
const claimsExpiring = (inSeconds: number | null): ClaimsV1 => ({
  publicKey: generateKey("M").publicKey,
  issuer: generateKey("A").publicKey,
  issuedAt: String(Math.floor(Date.now() / 1000) - 60),
  expiresAt: inSeconds === null ? null : Math.floor(Date.now() / 1000) + inSeconds,
  expired: false,
});

const signed = (name: string, claims: ClaimsV1) => ({ ...componentBody(name), claims });

/** The timers stored now for `expiresAt`. */
const timersFor = async (expiresAt: number) => {
  const jsm = await jetstreamManager(arbiter.nc);
  const subject = expiryTimerSubject(names, expiresAt);
  const info = await jsm.streams.info(names.expiriesStream, { subjects_filter: subject });
  return info.state.subjects?.[subject] ?? 0;
};

const rulesRevision = async () =>
  (await (await jetstreamManager(arbiter.nc)).streams.info(names.rulesStream)).state.last_seq;

beforeAll(async () => {
  arbiter = await startFanoutArbiter({
    shippedPermissions: true,
    rules: RULES,
    hearChanges: true,
  });
  workerNc = arbiter.workerConnections.at(-1)!;
  revision = await rulesRevision();
}, 60_000);

afterAll(async () => {
  await arbiter?.close();
});

describe("claims that expire revoke themselves", () => {
  it("overrides each permit whose claims expire, with its own request id, once, with no rules change; one timer per expiry", async () => {
    const claims = claimsExpiring(8);
    const expiresAt = claims.expiresAt!;
    const dKey = generateKey("N").publicKey;
    const [a, b, c, d] = [await host(), await host(), await host(), await host(dKey)];
    expect((await a!.evaluateStartComponent(signed("a1", claims))).permitted).toBe(true);
    expect((await b!.evaluateStartComponent(signed("b1", claims))).permitted).toBe(true);
    // Not permitted: nothing to revoke.
    expect((await c!.evaluateStartComponent(signed("never", claims))).permitted).toBe(false);
    // Replaced by a newer request for the same key (the host restarted), with claims that do not expire.
    expect((await d!.evaluateStartComponent(signed("d1", claims))).permitted).toBe(true);
    const restarted = await host(dKey);
    expect(
      (await restarted.evaluateStartComponent(signed("d1", { ...claims, expiresAt: null }))).permitted,
    ).toBe(true);
    await untilIndexCaughtUp(arbiter.nc);
    // Three permits and a denial with that expiry, one timer (looked at before it is due).
    expect(Date.now()).toBeLessThan(expiresAt * 1000);
    expect(await timersFor(expiresAt)).toBe(1);
    const heardBefore = arbiter.heard.length;
    await until(
      () =>
        [a!, b!].every((client) =>
          [...client.cacheEntries().values()].every((e) => !e.permitted && e.message === EXPIRED),
        ),
      { name: "both expiring permits overridden", timeout: 30_000, interval: 50 },
    );
    await until(async () => (await timersFor(expiresAt)) === 0, {
      name: "the timer handled",
      timeout: 10_000,
    });
    const overrides = arbiter.heard
      .slice(heardBefore)
      .map((text) => PolicyOverrideV1.parse(JSON.parse(text)));
    const ids = (client: HostPolicyClient) => client.sentRequestIds();
    expect(overrides.map((o) => o.requestId).sort()).toEqual([...ids(a!), ...ids(b!)].sort());
    for (const override of overrides) {
      expect(override).toMatchObject({ permitted: false, message: EXPIRED });
      expect(override.request_id).toBe(override.requestId);
    }
    expect([...c!.cacheEntries().values()]).toMatchObject([{ permitted: false, message: "never this one" }]);
    expect([...restarted.cacheEntries().values()]).toMatchObject([{ permitted: true }]);
    expect(await rulesRevision()).toBe(revision);
    // Recorded as every override is: a revocation and a signed re-evaluation decided after the expiry.
    const revocations = [];
    for await (const r of openJetStreamRevocationLog(arbiter.nc).read()) revocations.push(r.record);
    const expiredRecords = revocations.filter((r) => r.to.message === EXPIRED);
    expect(expiredRecords.map((r) => r.requestId).sort()).toEqual([...ids(a!), ...ids(b!)].sort());
    for (const r of expiredRecords) expect(r).toMatchObject({ from: { permitted: true }, revision });
    const reevaluations = [];
    for await (const stored of arbiter.store.decisions.read()) {
      const decision = DecisionV1.parse(JSON.parse(stored.text));
      if (decision.cause === "reevaluation") reevaluations.push(decision);
    }
    expect(reevaluations.map((r) => r.requestId).sort()).toEqual([...ids(a!), ...ids(b!)].sort());
    for (const r of reevaluations) {
      expect(r).toMatchObject({
        permitted: false,
        message: EXPIRED,
        decidingRule: "no-expired-claims",
        revision,
      });
      expect(Date.parse(r.evaluatedAt)).toBeGreaterThanOrEqual(expiresAt * 1000);
    }
  }, 60_000);

  it("refuses a host's timer; a timer forged with a worker's credential only makes workers look, and revokes nothing early", async () => {
    const claims = claimsExpiring(3600);
    const expiresAt = claims.expiresAt!;
    const client = await host();
    expect((await client.evaluateStartComponent(signed("late", claims))).permitted).toBe(true);
    await untilIndexCaughtUp(arbiter.nc);
    expect(await timersFor(expiresAt)).toBe(1);
    // A host may not publish under Arbiter's prefix at all.
    const hostJs = jetstream(await arbiter.connect("host"), { timeout: 1000 });
    const past = Math.floor(Date.now() / 1000) - 10;
    await expect(
      hostJs.publish(expiryTimerSubject(names, past), JSON.stringify({ expiresAt: past })),
    ).rejects.toThrow();
    expect(await timersFor(past)).toBe(0);
    // A stolen worker credential: a second timer for a pending expiry is refused by the stream
    // (one per expiry); a due one for the past is handled, garbage and a timer under another
    // expiry's subject are dropped, and none changes anything: the permit expires when its claims do.
    const js = jetstream(workerNc, { timeout: 2000 });
    await expect(
      js.publish(expiryTimerSubject(names, expiresAt), JSON.stringify({ expiresAt: past })),
    ).rejects.toThrow(/maximum messages per subject/);
    await js.publish(expiryTimerSubject(names, past), JSON.stringify({ expiresAt: past }));
    await js.publish(expiryTimerSubject(names, past + 1), "not a timer");
    await js.publish(expiryTimerSubject(names, past + 2), JSON.stringify({ expiresAt: expiresAt }));
    const heardBefore = arbiter.heard.length;
    await until(
      async () => (await timersFor(past)) + (await timersFor(past + 1)) + (await timersFor(past + 2)) === 0,
      { name: "the forged timers handled or dropped", timeout: 10_000 },
    );
    expect(arbiter.heard.slice(heardBefore)).toEqual([]);
    expect([...client.cacheEntries().values()]).toMatchObject([{ permitted: true }]);
    expect(await timersFor(expiresAt)).toBe(1);
  }, 60_000);

  it("drops far timers that no worker arms, stored with a worker's credential to take the consumer's pending timers", async () => {
    // Every timer not yet due is held by the shared consumer (at most 1,000,000 at once): timers
    // for each second of years to come would be held forever and keep real ones from being handed out.
    const js = jetstream(workerNc, { timeout: 2000 });
    const now = Math.floor(Date.now() / 1000);
    const forged = Array.from({ length: 200 }, (_, i) => now + 86_400 * 30 + 7 + i * 3);
    const jsm = await jetstreamManager(arbiter.nc);
    const stored = async () => (await jsm.streams.info(names.expiriesStream)).state.messages;
    const before = await stored();
    for (const at of forged)
      await js.publish(expiryTimerSubject(names, at), JSON.stringify({ expiresAt: at }));
    await until(async () => (await Promise.all(forged.map(timersFor))).every((n) => n === 0), {
      name: "the forged far timers dropped",
      timeout: 20_000,
    });
    // Each is replaced by the grid's timer for its second (as one stored by an earlier release
    // stood for real permits): a month away, the 200 share one or two.
    expect((await stored()) - before).toBeLessThanOrEqual(2);
  }, 60_000);

  it("arms a bounded number of timers however many distinct far expiries a host's claims name", async () => {
    // A host chooses its claims: 300 permitted components, each expiring at another second from
    // two hours to a century away. One timer each would fill the stream and the consumer's
    // pending timers (every one held until due), and make workers scan the index at each.
    const jsm = await jetstreamManager(arbiter.nc);
    const stored = async () => (await jsm.streams.info(names.expiriesStream)).state.messages;
    const before = await stored();
    const heardBefore = arbiter.heard.length;
    const client = await host();
    const now = Math.floor(Date.now() / 1000);
    for (let i = 0; i < 300; i++) {
      const claims = { ...claimsExpiring(null), expiresAt: now + 7200 + i * 10_513_171 };
      expect((await client.evaluateStartComponent(signed(`far-${i}`, claims))).permitted).toBe(true);
    }
    await untilIndexCaughtUp(arbiter.nc);
    // At most two timers for each doubling of the distance beyond the hour.
    expect((await stored()) - before).toBeLessThanOrEqual(2 * 20);
    expect(arbiter.heard.slice(heardBefore)).toEqual([]);
  }, 60_000);
});
