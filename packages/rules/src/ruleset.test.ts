import type { UnsignedRuleEventV1 } from "@arbiter/protocol";
import { createSigner, generateKey, type Signer, signJson } from "@arbiter/trust";
import { describe, expect, it } from "vitest";
import {
  evolveRuleset,
  initialRulesetState,
  isEnrolled,
  isEnrolledAt,
  type RulesetState,
  type RulesetTrust,
  restoreSnapshot,
  ruleEventHash,
  type StoredRuleEvent,
  signSnapshot,
  snapshotHeadMatches,
} from "./ruleset.js";

const admin = createSigner(generateKey("O").seed);
const intruder = createSigner(generateKey("O").seed);
const trust: RulesetTrust = { adminKeys: new Set([admin.publicKey]) };
const AT = "2026-01-01T00:00:00.000Z";
const PRODUCTION = "PRODUCTIONPRODUCTIONPRODUC";
const STAGING = "STAGINGSTAGINGSTAGINGSTAGI";
const workerKey = createSigner(generateKey("N").seed).publicKey;

const allowAll = { version: 1, default: "allow", rules: [] };
const denyStarts = {
  version: 1,
  default: "allow",
  rules: [{ id: "no-starts", effect: "deny", when: 'kind == "startComponent"' }],
};

type Body = DistributiveOmitBase<UnsignedRuleEventV1>;
type DistributiveOmitBase<T> = T extends unknown
  ? Omit<T, "eventId" | "at" | "actor" | "previous" | "deployment" | "prev">
  : never;

const replaced = (document: unknown = allowAll): Body => ({
  type: "ruleset.replaced",
  payload: { document },
});

/** A history: the genesis event of `deployment`, then each body chained to the event before it. */
function history(
  bodies: readonly Body[],
  deployment = PRODUCTION,
  signer: Signer = admin,
): StoredRuleEvent[] {
  const events: StoredRuleEvent[] = [];
  for (const body of [{ type: "deployment.created", payload: {} } as const, ...bodies]) {
    events.push(next(events, body, { deployment, signer }));
  }
  return events;
}

/** The event after `events`, chained to the last of them unless told otherwise. */
function next(
  events: readonly StoredRuleEvent[],
  body: Body,
  options: {
    deployment?: string;
    signer?: Signer;
    prev?: string | null;
    previous?: number;
    revision?: number;
  } = {},
): StoredRuleEvent {
  const last = events.at(-1);
  const signer = options.signer ?? admin;
  const event = {
    ...body,
    eventId: `e${events.length + 1}`,
    at: AT,
    actor: signer.publicKey,
    previous: options.previous ?? events.length,
    deployment: options.deployment ?? PRODUCTION,
    prev: options.prev !== undefined ? options.prev : last ? ruleEventHash(last.text) : null,
  } as UnsignedRuleEventV1;
  return { revision: options.revision ?? events.length + 1, text: signJson(event, signer) };
}

/** Folds the events in order from the initial state; returns the end state and every outcome. */
function fold(events: readonly StoredRuleEvent[], from: RulesetState = initialRulesetState(), with_ = trust) {
  let state = from;
  const outcomes = events.map((event) => {
    const result = evolveRuleset(state, event, with_);
    state = result.state;
    return result.outcome;
  });
  return { state, outcomes };
}

const skipped = (reason: RegExp) => ({
  applied: false,
  reason: expect.stringMatching(reason),
  breaksChain: false,
});
const breaks = (reason: RegExp) => ({
  applied: false,
  reason: expect.stringMatching(reason),
  breaksChain: true,
});

describe("the rules fold", () => {
  it("applies a chained history in order: genesis, replaced, upserted, removed", () => {
    const rule = { id: "only-linux", effect: "deny", when: 'host.labels["hostcore.os"] != "linux"' };
    const events = history([
      replaced(denyStarts),
      { type: "rule.upserted", payload: { rule } },
      { type: "rule.removed", payload: { ruleId: "no-starts" } },
    ]);
    const { state, outcomes } = fold(events);
    expect(outcomes).toEqual([{ applied: true }, { applied: true }, { applied: true }, { applied: true }]);
    expect(state).toMatchObject({ revision: 4, documentRevision: 4, deployment: PRODUCTION, broken: null });
    expect(state.head).toBe(ruleEventHash(events[3]!.text));
    expect(state.document?.rules.map((r) => r.id)).toEqual(["only-linux"]);
    expect(state.compiled?.rules.map((r) => r.rule.id)).toEqual(["only-linux"]);
  });

  describe("skips, keeps its rules and moves past an event that is", () => {
    const events = history([replaced(denyStarts)]);
    const base = fold(events).state;
    const expectKept = (event: StoredRuleEvent, reason: RegExp) => {
      const { state, outcome } = evolveRuleset(base, event, trust);
      expect(outcome).toEqual(skipped(reason));
      expect(state.document).toBe(base.document);
      expect(state.documentRevision).toBe(2);
      expect(state.revision).toBe(event.revision);
      expect(state.head).toBe(ruleEventHash(event.text));
      expect(state.broken).toBeNull();
      // The admin signs the next event over what is stored, junk included: the chain goes on.
      const after = next([...events, event], replaced(allowAll));
      expect(evolveRuleset(state, after, trust).outcome).toEqual({ applied: true });
      return state;
    };

    it("forged: signed by a key that is not an admin key", () => {
      expectKept(
        next(events, replaced(), { signer: intruder }),
        /signed by O[A-Z2-7]+, which is not an accepted admin key/,
      );
    });

    it("forged: claiming an admin key without its signature, or tampered after signing", () => {
      const claimed = next(events, replaced(), { signer: intruder });
      expectKept(
        { ...claimed, text: claimed.text.replace(intruder.publicKey, admin.publicKey) },
        /the signature by O[A-Z2-7]+ is not valid/,
      );
      const { text } = next(events, replaced(denyStarts));
      expectKept(
        { revision: 3, text: text.replace('"effect":"deny"', '"effect":"allow"') },
        /signature .* is not valid/,
      );
    });

    it("forged: unsigned, or not a rule event at all", () => {
      const unsigned = next(events, replaced()).text.replace(/,"signature":"[^"]+"}$/, "}");
      expectKept({ revision: 3, text: unsigned }, /not a valid rule event: signature/);
      expectKept({ revision: 3, text: "not json" }, /not a valid rule event/);
    });

    it("written in the unchained format of an earlier Arbiter", () => {
      const old = signJson(
        {
          type: "ruleset.replaced",
          eventId: "x",
          at: AT,
          actor: admin.publicKey,
          previous: 2,
          payload: { document: allowAll },
        },
        admin,
      );
      expectKept({ revision: 3, text: old }, /unchained format of an earlier Arbiter.*apply the rules again/);
    });

    it("invalid: a document that does not validate or compile, a bad upsert, a removal of nothing", () => {
      expectKept(next(events, replaced({ version: 2, default: "allow", rules: [] })), /^invalid rules: /);
      const kindIsNotBool = { ...allowAll, rules: [{ id: "oops", effect: "allow", when: "kind" }] };
      expectKept(
        next(events, replaced(kindIsNotBool)),
        /rule "oops": when, column 1: the condition is a string, not a bool/,
      );
      const rule = { id: "bad", effect: "allow", when: "host.labels" };
      expectKept(next(events, { type: "rule.upserted", payload: { rule } }), /not a bool/);
      expectKept(
        next(events, { type: "rule.removed", payload: { ruleId: "nope" } }),
        /names rule "nope", which does not exist/,
      );
    });

    it("stale or out of order: not the next revision", () => {
      const { outcome } = evolveRuleset(base, next(events, replaced(), { revision: 4 }), trust);
      expect(outcome).toEqual(skipped(/event at revision 4 arrived out of order \(expected 3\)/));
    });
  });

  describe("stops at an event that does not chain, and applies nothing after it", () => {
    const events = history([replaced(denyStarts)]);
    const base = fold(events).state;
    const expectBreak = (event: StoredRuleEvent, reason: RegExp) => {
      const { state, outcome } = evolveRuleset(base, event, trust);
      expect(outcome).toEqual(breaks(reason));
      expect(state).toMatchObject({ revision: 2, documentRevision: 2, head: base.head });
      expect(state.document).toBe(base.document);
      expect(state.broken).toEqual({ revision: event.revision, reason: expect.stringMatching(reason) });
      // Whatever comes next, even an event chained to the refused one, changes nothing.
      const after = next([...events, event], replaced(allowAll));
      const then = evolveRuleset(state, after, trust);
      expect(then.outcome).toEqual(skipped(/after the break at revision 3/));
      expect(then.state).toBe(state);
    };

    it("copied from another deployment signed by the same admin key", () => {
      const staging = history([replaced(allowAll), replaced(allowAll)], STAGING);
      expectBreak(staging[2]!, /belongs to deployment STAGING.*not to PRODUCTION.*another deployment/);
    });

    it("a snapshot-sized refill: an older event of the same history stored again later", () => {
      expectBreak(
        { revision: 3, text: events[1]!.text },
        /signed to follow revision 1 .* stored at revision 3/,
      );
    });

    it("a wrong prev: signed after another event than the one stored before it", () => {
      const other = history([replaced(allowAll)]);
      expectBreak(next(other, replaced(allowAll)), /prev [0-9a-f]{12}.*hashes to [0-9a-f]{12}.*refilled/);
      expectBreak(next(events, replaced(allowAll), { prev: null }), /prev null/);
    });

    it("a genesis event anywhere but at revision 1", () => {
      expectBreak(
        next(events, { type: "deployment.created", payload: {} }),
        /genesis event .* at revision 3/,
      );
    });

    it("a history with no genesis event, or one pinned to another deployment", () => {
      const noGenesis = history([replaced(allowAll)]).slice(1);
      const { state, outcomes } = fold([
        { revision: 1, text: "junk" },
        { ...noGenesis[0]!, revision: 2 },
      ]);
      expect(outcomes[1]).toEqual(breaks(/follows no genesis event/));
      expect(state.revision).toBe(1);
      const pinned = fold(history([replaced(allowAll)], STAGING), initialRulesetState(), {
        ...trust,
        deployment: PRODUCTION,
      });
      expect(pinned.outcomes[0]).toEqual(breaks(/belongs to deployment STAGING.*pinned/));
      expect(pinned.state).toMatchObject({ revision: 0, document: null, deployment: null });
    });
  });

  it("enrolls and removes worker keys, each for the revisions between its events", () => {
    const events = history([
      replaced(allowAll),
      { type: "worker.enrolled", payload: { publicKey: workerKey, name: "w1" } },
      { type: "worker.enrolled", payload: { publicKey: workerKey } },
      { type: "worker.removed", payload: { publicKey: workerKey } },
      { type: "worker.removed", payload: { publicKey: workerKey } },
    ]);
    const { state, outcomes } = fold(events);
    expect(outcomes).toEqual([
      { applied: true },
      { applied: true },
      { applied: true },
      skipped(/is enrolled already/),
      { applied: true },
      skipped(/is not enrolled/),
    ]);
    expect(state.workers).toEqual([{ publicKey: workerKey, name: "w1", from: 3, to: 5 }]);
    expect(state.document).toEqual(fold(events.slice(0, 2)).state.document);
    expect([2, 3, 4, 5].map((r) => isEnrolledAt(state.workers, workerKey, r))).toEqual([
      false,
      true,
      true,
      false,
    ]);
    expect(isEnrolled(state.workers, workerKey)).toBe(false);
    expect(isEnrolled(fold(events.slice(0, 3)).state.workers, workerKey)).toBe(true);
  });
});

describe("rules snapshots", () => {
  const events = history([
    replaced(denyStarts),
    { type: "worker.enrolled", payload: { publicKey: workerKey } },
  ]);
  const state = fold(events).state;
  const at = new Date(AT);

  it("restore the state they were signed at, workers and head included", () => {
    const restored = restoreSnapshot(signSnapshot(state, admin, at), trust);
    expect(restored).toMatchObject({ ok: true });
    if (!restored.ok) return;
    expect(restored.state).toMatchObject({
      revision: 3,
      documentRevision: 2,
      deployment: PRODUCTION,
      head: state.head,
      workers: state.workers,
      document: state.document,
    });
    expect(restored.state.compiled?.document).toEqual(state.document);
    expect(snapshotHeadMatches(restored.state, events[2]!)).toBeNull();
  });

  it("are refused when their head is not in the stream followed: another history, or a shorter one", () => {
    const restored = restoreSnapshot(signSnapshot(state, admin, at), trust);
    if (!restored.ok) throw new Error(restored.reason);
    const other = history([replaced(allowAll), replaced(allowAll)]);
    expect(snapshotHeadMatches(restored.state, other[2]!)).toMatch(/hashes to .*another history/);
    expect(snapshotHeadMatches(restored.state, null)).toMatch(/revision 3 .* the rules stream does not have/);
  });

  it("are refused when they do not verify, are of another deployment than the pinned one, or unchained", () => {
    const text = signSnapshot(state, admin, at);
    expect(restoreSnapshot(text.replace('"revision":3', '"revision":9'), trust)).toMatchObject({
      ok: false,
      reason: "the snapshot signature is not valid",
    });
    expect(restoreSnapshot(signSnapshot(state, intruder, at), trust)).toMatchObject({
      ok: false,
      reason: expect.stringMatching(/signed by O[A-Z2-7]+, which is not an accepted admin key/),
    });
    expect(restoreSnapshot(text, { ...trust, deployment: STAGING })).toEqual({
      ok: false,
      reason: `the snapshot belongs to deployment ${PRODUCTION}, not to ${STAGING}`,
      foreign: true,
    });
    const old = signJson({ revision: 3, document: allowAll, at: AT, actor: admin.publicKey }, admin);
    expect(restoreSnapshot(old, trust)).toMatchObject({
      ok: false,
      reason: expect.stringMatching(/unchained format/),
    });
    expect(restoreSnapshot("{", trust)).toMatchObject({
      ok: false,
      reason: "the snapshot is not a valid RulesSnapshotV1",
    });
  });

  it("are refused when their document is invalid, even when signed", () => {
    const bad = signJson(
      {
        revision: 3,
        deployment: PRODUCTION,
        head: { revision: 3, hash: state.head },
        document: { ...allowAll, rules: [{ id: "oops", effect: "allow", when: "kind" }] },
        documentRevision: 2,
        workers: [],
        at: AT,
        actor: admin.publicKey,
      },
      admin,
    );
    expect(restoreSnapshot(bad, trust)).toMatchObject({
      ok: false,
      reason: expect.stringMatching(/^the snapshot document is invalid: .*not a bool/),
    });
  });

  it("cannot be made of a history that has not started or does not chain", () => {
    expect(() => signSnapshot(initialRulesetState(), admin, at)).toThrow(/no genesis event/);
    const broken = evolveRuleset(state, { revision: 4, text: events[1]!.text }, trust).state;
    expect(() => signSnapshot(broken, admin, at)).toThrow(/does not chain/);
  });
});
