import { RuleEventV1, RulesSnapshotV1 } from "@arbiter/protocol";
import { type Signer, signJson, verifySignedJson } from "@arbiter/trust";
import { type CompiledRules, compileRules } from "./compile.js";
import { type RulesDocument, RuleV1, validateRulesDocument } from "./document.js";
import { isInvalidRulesError } from "./errors.js";

/** A rule event as stored: its revision (stream sequence) and its exact signed JSON text. */
export interface StoredRuleEvent {
  readonly revision: number;
  readonly text: string;
}

/** The rules as folded from the event stream up to `revision`. */
export interface RulesetState {
  /** The last rule event consumed (applied or skipped); the revision decisions are made at. */
  readonly revision: number;
  /** The current document, or null before the first valid event. */
  readonly document: RulesDocument | null;
  /** The document compiled, ready to evaluate; null with the document. */
  readonly compiled: CompiledRules | null;
  /** The revision of the event that produced the current document (0 = none). */
  readonly documentRevision: number;
}

/** Which admin keys may change the rules. */
export interface RulesetTrust {
  readonly adminKeys: ReadonlySet<string>;
}

/** What happened to one event during a fold: applied, or skipped and why. */
export type FoldOutcome = { readonly applied: true } | { readonly applied: false; readonly reason: string };

/** The state before any rule event. */
export function initialRulesetState(): RulesetState {
  return { revision: 0, document: null, compiled: null, documentRevision: 0 };
}

/**
 * Folds one stored rule event into the state. Pure: the event is applied only when it parses,
 * is signed by an accepted admin key, was signed for this exact position, and leaves a document
 * that validates and compiles; otherwise the state keeps its rules and the outcome says why.
 */
export function evolveRuleset(
  state: RulesetState,
  stored: StoredRuleEvent,
  trust: RulesetTrust,
): { state: RulesetState; outcome: FoldOutcome } {
  const skip = (reason: string) => ({
    state: { ...state, revision: Math.max(state.revision, stored.revision) },
    outcome: { applied: false as const, reason },
  });
  if (stored.revision !== state.revision + 1) {
    return skip(`event at revision ${stored.revision} arrived out of order (expected ${state.revision + 1})`);
  }
  const parsed = RuleEventV1.safeParse(parseJsonOrNull(stored.text));
  if (!parsed.success) {
    const first = parsed.error.issues[0];
    return skip(
      `not a valid rule event: ${first ? `${first.path.join(".") || "event"}: ${first.message}` : "unreadable"}`,
    );
  }
  const event = parsed.data;
  if (!trust.adminKeys.has(event.actor))
    return skip(`signed by ${event.actor}, which is not an accepted admin key`);
  if (!verifySignedJson(stored.text, event.actor))
    return skip(`the signature by ${event.actor} is not valid`);
  if (event.previous !== stored.revision - 1) {
    return skip(
      `signed to follow revision ${event.previous} but stored at revision ${stored.revision} (replayed?)`,
    );
  }

  let next: RulesDocument;
  try {
    next = applyEvent(state.document, event);
  } catch (err) {
    return skip(isInvalidRulesError(err) ? `invalid rules: ${err.message}` : errorText(err));
  }
  let compiled: CompiledRules;
  try {
    compiled = compileRules(next);
  } catch (err) {
    return skip(`the rules do not compile: ${errorText(err)}`);
  }
  return {
    state: { revision: stored.revision, document: next, compiled, documentRevision: stored.revision },
    outcome: { applied: true },
  };
}

function applyEvent(current: RulesDocument | null, event: RuleEventV1): RulesDocument {
  switch (event.type) {
    case "ruleset.replaced":
      return validateRulesDocument(event.payload.document);
    case "rule.upserted": {
      if (current === null) throw new Error("rule.upserted before any ruleset exists");
      const rule = RuleV1.parse(event.payload.rule);
      const index = current.rules.findIndex((r) => r.id === rule.id);
      const rules =
        index < 0 ? [...current.rules, rule] : current.rules.map((r, i) => (i === index ? rule : r));
      return validateRulesDocument({ ...current, rules });
    }
    case "rule.removed": {
      if (current === null) throw new Error("rule.removed before any ruleset exists");
      if (!current.rules.some((r) => r.id === event.payload.ruleId)) {
        throw new Error(`rule.removed names rule "${event.payload.ruleId}", which does not exist`);
      }
      return validateRulesDocument({
        ...current,
        rules: current.rules.filter((r) => r.id !== event.payload.ruleId),
      });
    }
  }
}

/** Signs a snapshot of the state with an admin key; the text goes to the snapshot store. */
export function signSnapshot(state: RulesetState, signer: Signer, at: Date): string {
  const snapshot: Omit<RulesSnapshotV1, "signature"> = {
    revision: state.revision,
    document: state.document,
    at: at.toISOString(),
    actor: signer.publicKey,
  };
  return signJson(snapshot, signer);
}

/**
 * Restores a state from a snapshot text, or explains why it cannot be trusted (bad JSON, an
 * unknown or invalid signature, a document that does not validate): the caller then folds the
 * whole history instead.
 */
export function restoreSnapshot(
  text: string,
  trust: RulesetTrust,
): { ok: true; state: RulesetState } | { ok: false; reason: string } {
  const parsed = RulesSnapshotV1.safeParse(parseJsonOrNull(text));
  if (!parsed.success) return { ok: false, reason: "the snapshot is not a valid RulesSnapshotV1" };
  const snapshot = parsed.data;
  if (!trust.adminKeys.has(snapshot.actor)) {
    return {
      ok: false,
      reason: `the snapshot is signed by ${snapshot.actor}, which is not an accepted admin key`,
    };
  }
  if (!verifySignedJson(text, snapshot.actor))
    return { ok: false, reason: "the snapshot signature is not valid" };
  if (snapshot.document === null) {
    return { ok: true, state: { ...initialRulesetState(), revision: snapshot.revision } };
  }
  try {
    const document = validateRulesDocument(snapshot.document);
    return {
      ok: true,
      state: {
        revision: snapshot.revision,
        document,
        compiled: compileRules(document),
        documentRevision: snapshot.revision,
      },
    };
  } catch (err) {
    return { ok: false, reason: `the snapshot document is invalid: ${errorText(err)}` };
  }
}

function parseJsonOrNull(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
