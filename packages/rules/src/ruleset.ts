import { createHash } from "node:crypto";
import { RuleEventV1, RulesSnapshotV1, type WorkerEnrollmentV1 } from "@arbiter/protocol";
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
  /** The deployment fixed by the genesis event at revision 1; null before it. */
  readonly deployment: string | null;
  /** The hash ({@link ruleEventHash}) of the event at `revision`, which the next event must name as `prev`. */
  readonly head: string | null;
  /** Every period a worker key was enrolled, in the order of the events. */
  readonly workers: readonly WorkerEnrollmentV1[];
  /**
   * Where the history stopped chaining (another deployment, a wrong `prev`, a genesis out of
   * place); once set, no later event is applied and `revision` stays the last good one.
   */
  readonly broken: ChainBreak | null;
}

/** The first event of a history that does not chain, and why. */
export interface ChainBreak {
  readonly revision: number;
  readonly reason: string;
}

/** Which admin keys may change the rules, and optionally the only deployment accepted. */
export interface RulesetTrust {
  readonly adminKeys: ReadonlySet<string>;
  /** When set, a history whose genesis names another deployment does not chain. */
  readonly deployment?: string;
}

/**
 * What happened to one event during a fold: applied, or skipped and why. `breaksChain` is true
 * for the event where the history stopped chaining (see {@link RulesetState.broken}).
 */
export type FoldOutcome =
  | { readonly applied: true }
  | { readonly applied: false; readonly reason: string; readonly breaksChain: boolean };

/** The state before any rule event. */
export function initialRulesetState(): RulesetState {
  return {
    revision: 0,
    document: null,
    compiled: null,
    documentRevision: 0,
    deployment: null,
    head: null,
    workers: [],
    broken: null,
  };
}

/** SHA-256 of a stored event's text in UTF-8, lower-case hex: what the next event names as `prev`. */
export function ruleEventHash(text: string): string {
  return createHash("sha256").update(text, "utf8").digest("hex");
}

/** True when `publicKey` was enrolled at `revision` (enrolled at or before it, not removed by then). */
export function isEnrolledAt(
  workers: readonly WorkerEnrollmentV1[],
  publicKey: string,
  revision: number,
): boolean {
  return workers.some(
    (w) => w.publicKey === publicKey && w.from <= revision && (w.to === null || revision < w.to),
  );
}

/** True when `publicKey` is enrolled now (its last period is still open). */
export function isEnrolled(workers: readonly WorkerEnrollmentV1[], publicKey: string): boolean {
  return workers.some((w) => w.publicKey === publicKey && w.to === null);
}

/**
 * Folds one stored rule event into the state. Pure. An event that is not a validly signed
 * event of an accepted admin, or whose rules do not validate and compile, is skipped (the state
 * keeps its rules and moves past it). A validly signed event that does not chain (another
 * deployment, a `prev` that is not the hash of the event before it, a genesis out of place)
 * breaks the history: it and everything after it is refused, and the state keeps its last good
 * revision.
 */
export function evolveRuleset(
  state: RulesetState,
  stored: StoredRuleEvent,
  trust: RulesetTrust,
): { state: RulesetState; outcome: FoldOutcome } {
  if (state.broken !== null) {
    return {
      state,
      outcome: {
        applied: false,
        reason: `after the break at revision ${state.broken.revision}: nothing after it is applied`,
        breaksChain: false,
      },
    };
  }
  const hash = ruleEventHash(stored.text);
  const skip = (reason: string) => ({
    state: { ...state, revision: Math.max(state.revision, stored.revision), head: hash },
    outcome: { applied: false as const, reason, breaksChain: false },
  });
  const breakAt = (reason: string) => ({
    state: { ...state, broken: { revision: stored.revision, reason } },
    outcome: { applied: false as const, reason, breaksChain: true },
  });
  if (stored.revision !== state.revision + 1) {
    return skip(`event at revision ${stored.revision} arrived out of order (expected ${state.revision + 1})`);
  }
  const raw = parseJsonOrNull(stored.text);
  if (isUnchainedFormat(raw)) {
    return skip(
      "written in the unchained format of an earlier Arbiter (no deployment, no prev): start a new rules stream and apply the rules again",
    );
  }
  const parsed = RuleEventV1.safeParse(raw);
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

  // Validly signed by an admin from here on: does it belong here?
  if (event.type === "deployment.created") {
    if (stored.revision !== 1 || state.deployment !== null) {
      return breakAt(
        `a genesis event of deployment ${event.deployment} at revision ${stored.revision}: a history starts once, at revision 1`,
      );
    }
    if (event.prev !== null || event.previous !== 0) {
      return breakAt("the genesis event names an event before it");
    }
    if (trust.deployment !== undefined && event.deployment !== trust.deployment) {
      return breakAt(
        `the history belongs to deployment ${event.deployment}, not to ${trust.deployment} (the deployment this reader is pinned to)`,
      );
    }
    return {
      state: { ...state, revision: 1, head: hash, deployment: event.deployment },
      outcome: { applied: true },
    };
  }
  if (state.deployment === null) {
    return breakAt(
      `revision ${stored.revision} follows no genesis event: a history starts with deployment.created at revision 1`,
    );
  }
  if (event.deployment !== state.deployment) {
    return breakAt(
      `the event belongs to deployment ${event.deployment}, not to ${state.deployment} (copied from another deployment?)`,
    );
  }
  if (event.previous !== stored.revision - 1 || event.prev !== state.head) {
    return breakAt(
      `the event was signed to follow revision ${event.previous} with prev ${shortHash(event.prev)}, but it is stored at revision ${stored.revision} after an event that hashes to ${shortHash(state.head)} (the stream was refilled, or the event replayed?)`,
    );
  }

  const chained = { ...state, revision: stored.revision, head: hash };
  if (event.type === "worker.enrolled" || event.type === "worker.removed") {
    const key = event.payload.publicKey;
    if (event.type === "worker.enrolled") {
      if (isEnrolled(state.workers, key)) return skip(`worker key ${key} is enrolled already`);
      const period = { publicKey: key, name: event.payload.name ?? null, from: stored.revision, to: null };
      return { state: { ...chained, workers: [...state.workers, period] }, outcome: { applied: true } };
    }
    if (!isEnrolled(state.workers, key)) return skip(`worker key ${key} is not enrolled`);
    const workers = state.workers.map((w) =>
      w.publicKey === key && w.to === null ? { ...w, to: stored.revision } : w,
    );
    return { state: { ...chained, workers }, outcome: { applied: true } };
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
    state: { ...chained, document: next, compiled, documentRevision: stored.revision },
    outcome: { applied: true },
  };
}

/** A JSON object signed as a rule event but without the fields that chain it. */
function isUnchainedFormat(raw: unknown): boolean {
  return (
    typeof raw === "object" &&
    raw !== null &&
    "actor" in raw &&
    "signature" in raw &&
    !("deployment" in raw) &&
    !("prev" in raw)
  );
}

function shortHash(hash: string | null): string {
  return hash === null ? "null" : `${hash.slice(0, 12)}…`;
}

type RulesChange = Extract<RuleEventV1, { type: "ruleset.replaced" | "rule.upserted" | "rule.removed" }>;

function applyEvent(current: RulesDocument | null, event: RulesChange): RulesDocument {
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

/**
 * Signs a snapshot of the state with an admin key; the text goes to the snapshot store. Throws
 * TypeError for a state with no deployment or head (nothing folded yet) or a broken history.
 */
export function signSnapshot(state: RulesetState, signer: Signer, at: Date): string {
  if (state.deployment === null || state.head === null || state.revision === 0) {
    throw new TypeError("a snapshot summarizes a history: this state has no genesis event yet");
  }
  if (state.broken !== null) throw new TypeError("a history that does not chain has no snapshot");
  const snapshot: Omit<RulesSnapshotV1, "signature"> = {
    revision: state.revision,
    deployment: state.deployment,
    head: { revision: state.revision, hash: state.head },
    document: state.document,
    documentRevision: state.documentRevision,
    workers: [...state.workers],
    at: at.toISOString(),
    actor: signer.publicKey,
  };
  return signJson(snapshot, signer);
}

/**
 * Restores a state from a snapshot text, or explains why it cannot be trusted (bad JSON, an
 * unknown or invalid signature, another deployment than the pinned one, a document that does
 * not validate; `foreign` for a valid snapshot of another deployment): the caller then folds the
 * whole history instead. The caller must still check
 * that the snapshot's head is in the stream it follows ({@link snapshotHeadMatches}).
 */
export function restoreSnapshot(
  text: string,
  trust: RulesetTrust,
): { ok: true; state: RulesetState } | { ok: false; reason: string; foreign?: true } {
  const raw = parseJsonOrNull(text);
  if (typeof raw === "object" && raw !== null && !("head" in raw) && "revision" in raw) {
    return { ok: false, reason: "the snapshot is in the unchained format of an earlier Arbiter (no head)" };
  }
  const parsed = RulesSnapshotV1.safeParse(raw);
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
  if (snapshot.head.revision !== snapshot.revision) {
    return { ok: false, reason: "the snapshot's head is not at its revision" };
  }
  if (trust.deployment !== undefined && snapshot.deployment !== trust.deployment) {
    return {
      ok: false,
      reason: `the snapshot belongs to deployment ${snapshot.deployment}, not to ${trust.deployment}`,
      foreign: true,
    };
  }
  const base: RulesetState = {
    ...initialRulesetState(),
    revision: snapshot.revision,
    deployment: snapshot.deployment,
    head: snapshot.head.hash,
    workers: snapshot.workers,
  };
  if (snapshot.document === null) return { ok: true, state: base };
  try {
    const document = validateRulesDocument(snapshot.document);
    return {
      ok: true,
      state: {
        ...base,
        document,
        compiled: compileRules(document),
        documentRevision: snapshot.documentRevision,
      },
    };
  } catch (err) {
    return { ok: false, reason: `the snapshot document is invalid: ${errorText(err)}` };
  }
}

/**
 * Whether a restored state's head is the event stored at its revision in the stream being
 * followed: null when it is, else why not (the snapshot then summarizes another history).
 */
export function snapshotHeadMatches(state: RulesetState, stored: StoredRuleEvent | null): string | null {
  if (stored === null || stored.revision !== state.revision) {
    return `the snapshot names revision ${state.revision} of deployment ${state.deployment}, which the rules stream does not have`;
  }
  if (ruleEventHash(stored.text) !== state.head) {
    return `the snapshot names revision ${state.revision} with hash ${shortHash(state.head)}, but the event stored there hashes to ${shortHash(ruleEventHash(stored.text))} (a snapshot of another history)`;
  }
  return null;
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
