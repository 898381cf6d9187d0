import type { UnsignedRuleEventV1 } from "@arbiter/protocol";
import { createSigner, generateKey, type Signer, signJson } from "@arbiter/trust";
import { describe, expect, it } from "vitest";
import {
  evolveRuleset,
  initialRulesetState,
  type RulesetState,
  type RulesetTrust,
  restoreSnapshot,
  type StoredRuleEvent,
  signSnapshot,
} from "./ruleset.js";

const admin = createSigner(generateKey("O").seed);
const intruder = createSigner(generateKey("O").seed);
const trust: RulesetTrust = { adminKeys: new Set([admin.publicKey]) };
const AT = "2026-01-01T00:00:00.000Z";

const allowAll = { version: 1, default: "allow", rules: [] };
const denyStarts = {
  version: 1,
  default: "allow",
  rules: [{ id: "no-starts", effect: "deny", when: 'kind == "startComponent"' }],
};

function replaced(previous: number, document: unknown = allowAll): UnsignedRuleEventV1 {
  return {
    type: "ruleset.replaced",
    eventId: `e${previous}`,
    at: AT,
    actor: admin.publicKey,
    previous,
    payload: { document },
  };
}

function stored(revision: number, event: UnsignedRuleEventV1, signer: Signer = admin): StoredRuleEvent {
  return { revision, text: signJson(event, signer) };
}

/** Folds the events in order from the initial state; returns the end state and every outcome. */
function fold(events: readonly StoredRuleEvent[], from: RulesetState = initialRulesetState()) {
  let state = from;
  const outcomes = events.map((event) => {
    const next = evolveRuleset(state, event, trust);
    state = next.state;
    return next.outcome;
  });
  return { state, outcomes };
}

const skipped = (reason: RegExp) => ({ applied: false, reason: expect.stringMatching(reason) });

describe("the rules fold", () => {
  it("applies validly signed events in order: replaced, upserted, removed", () => {
    const rule = { id: "only-linux", effect: "deny", when: 'host.labels["hostcore.os"] != "linux"' };
    const { state, outcomes } = fold([
      stored(1, replaced(0, denyStarts)),
      stored(2, { ...replaced(1), type: "rule.upserted", payload: { rule } }),
      stored(3, { ...replaced(2), type: "rule.removed", payload: { ruleId: "no-starts" } }),
    ]);
    expect(outcomes).toEqual([{ applied: true }, { applied: true }, { applied: true }]);
    expect(state).toMatchObject({ revision: 3, documentRevision: 3 });
    expect(state.document?.rules.map((r) => r.id)).toEqual(["only-linux"]);
    expect(state.compiled?.rules.map((r) => r.rule.id)).toEqual(["only-linux"]);
  });

  describe("keeps the rules it had, moves past the event and says why, for an event that is", () => {
    const base = fold([stored(1, replaced(0, denyStarts))]).state;
    const expectKept = (event: StoredRuleEvent, reason: RegExp) => {
      const { state, outcome } = evolveRuleset(base, event, trust);
      expect(outcome).toEqual(skipped(reason));
      expect(state.document).toBe(base.document);
      expect(state.compiled).toBe(base.compiled);
      expect(state.documentRevision).toBe(1);
      expect(state.revision).toBe(Math.max(base.revision, event.revision));
      return state;
    };

    it("forged: signed by a key that is not an admin key", () => {
      const event = { ...replaced(1), actor: intruder.publicKey };
      expectKept(stored(2, event, intruder), /signed by O[A-Z2-7]+, which is not an accepted admin key/);
    });

    it("forged: claiming an admin key without its signature", () => {
      expectKept(stored(2, replaced(1), intruder), /the signature by O[A-Z2-7]+ is not valid/);
    });

    it("forged: tampered after signing", () => {
      const { text } = stored(2, replaced(1, denyStarts));
      const tampered = text.replace('"effect":"deny"', '"effect":"allow"');
      expect(tampered).not.toBe(text);
      expectKept({ revision: 2, text: tampered }, /signature .* is not valid/);
    });

    it("forged: unsigned, or not a rule event at all", () => {
      expectKept({ revision: 2, text: JSON.stringify(replaced(1)) }, /not a valid rule event: signature/);
      expectKept({ revision: 2, text: "not json" }, /not a valid rule event/);
      expectKept(
        { revision: 2, text: JSON.stringify({ ...replaced(1), type: "rules.dropped" }) },
        /not a valid rule event/,
      );
    });

    it("replayed: a valid event copied to a later revision", () => {
      const original = stored(2, replaced(1));
      expect(evolveRuleset(base, original, trust).outcome).toEqual({ applied: true });
      const later = fold([original], base).state;
      const { state, outcome } = evolveRuleset(later, { revision: 3, text: original.text }, trust);
      expect(outcome).toEqual(skipped(/signed to follow revision 1 but stored at revision 3 \(replayed\?\)/));
      expect(state).toMatchObject({ revision: 3, documentRevision: 2 });
    });

    it("replayed: the first event of the history appended again", () => {
      expectKept(
        { revision: 2, text: stored(1, replaced(0, allowAll)).text },
        /signed to follow revision 0 .*replayed/,
      );
    });

    it("foreign: from another stream's history, written after a revision this one does not have there", () => {
      // Events carry no stream or prefix: what binds one to this history is the revision it follows.
      expectKept(stored(2, replaced(41)), /signed to follow revision 41 but stored at revision 2/);
    });

    it("stale or out of order: not the next revision", () => {
      expectKept(stored(3, replaced(2)), /event at revision 3 arrived out of order \(expected 2\)/);
      expectKept(stored(1, replaced(0, allowAll)), /event at revision 1 arrived out of order \(expected 2\)/);
    });

    it("invalid: a document that does not validate or does not compile", () => {
      expectKept(stored(2, replaced(1, { version: 2, default: "allow", rules: [] })), /^invalid rules: /);
      const kindIsNotBool = { ...allowAll, rules: [{ id: "oops", effect: "allow", when: "kind" }] };
      expectKept(
        stored(2, replaced(1, kindIsNotBool)),
        /rule "oops": when, column 1: the condition is a string, not a bool/,
      );
      const syntax = { ...allowAll, rules: [{ id: "x", effect: "allow", when: "kind ==" }] };
      expectKept(stored(2, replaced(1, syntax)), /rule "x": when.*syntax error/);
    });

    it("invalid: an upsert of a bad rule, or a removal of a rule that does not exist", () => {
      const rule = { id: "bad", effect: "allow", when: "host.labels" };
      expectKept(stored(2, { ...replaced(1), type: "rule.upserted", payload: { rule } }), /not a bool/);
      expectKept(
        stored(2, { ...replaced(1), type: "rule.removed", payload: { ruleId: "nope" } }),
        /names rule "nope", which does not exist/,
      );
    });
  });

  it("refuses a change before any ruleset exists", () => {
    const { state, outcomes } = fold([
      stored(1, { ...replaced(0), type: "rule.removed", payload: { ruleId: "x" } }),
    ]);
    expect(outcomes).toEqual([skipped(/rule\.removed before any ruleset exists/)]);
    expect(state).toEqual({ ...initialRulesetState(), revision: 1 });
  });
});

describe("rules snapshots", () => {
  const state = fold([
    stored(1, replaced(0, denyStarts)),
    stored(2, replaced(1, allowAll)),
    stored(3, replaced(99)),
  ]).state;
  const at = new Date(AT);

  it("restore the state they were signed at", () => {
    expect(state.revision).toBe(3);
    const restored = restoreSnapshot(signSnapshot(state, admin, at), trust);
    expect(restored.ok).toBe(true);
    if (!restored.ok) return;
    expect(restored.state).toMatchObject({ revision: 3, document: state.document });
    expect(restored.state.compiled?.document).toEqual(state.document);
    const empty = restoreSnapshot(signSnapshot({ ...initialRulesetState(), revision: 4 }, admin, at), trust);
    expect(empty).toEqual({ ok: true, state: { ...initialRulesetState(), revision: 4 } });
  });

  it("are refused when they do not verify, so the whole history is folded instead", () => {
    const text = signSnapshot(state, admin, at);
    expect(restoreSnapshot(text.replace('"revision":3', '"revision":9'), trust)).toEqual({
      ok: false,
      reason: "the snapshot signature is not valid",
    });
    expect(restoreSnapshot(signSnapshot(state, intruder, at), trust)).toEqual({
      ok: false,
      reason: expect.stringMatching(/signed by O[A-Z2-7]+, which is not an accepted admin key/),
    });
    const claimed = signSnapshot(state, intruder, at).replace(intruder.publicKey, admin.publicKey);
    expect(restoreSnapshot(claimed, trust)).toMatchObject({
      ok: false,
      reason: "the snapshot signature is not valid",
    });
    expect(restoreSnapshot("{", trust)).toEqual({
      ok: false,
      reason: "the snapshot is not a valid RulesSnapshotV1",
    });
  });

  it("are refused when their document is invalid, even when signed", () => {
    const bad = signJson(
      {
        revision: 5,
        document: { ...allowAll, rules: [{ id: "oops", effect: "allow", when: "kind" }] },
        at: AT,
        actor: admin.publicKey,
      },
      admin,
    );
    expect(restoreSnapshot(bad, trust)).toEqual({
      ok: false,
      reason: expect.stringMatching(/^the snapshot document is invalid: .*not a bool/),
    });
  });
});
