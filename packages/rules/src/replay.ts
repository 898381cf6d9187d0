import {
  decodePolicyValue,
  isByteLevelRejection,
  type NormalizedRequest,
  type UnsignedDecisionV1,
} from "@arbiter/protocol";
import {
  type DecisionContext,
  type DecisionTrust,
  decideRequest,
  decisionRecord,
  rejectionRecord,
} from "./decision.js";
import {
  evolveRuleset,
  type FoldOutcome,
  initialRulesetState,
  type RulesetState,
  type RulesetTrust,
  type StoredRuleEvent,
} from "./ruleset.js";

/**
 * The rules at every revision of one history, folded once with the fold workers use
 * ({@link evolveRuleset}): each document is compiled once, when the event that makes it is folded,
 * and every later revision without a new document shares that compilation.
 */
export class RevisionCache {
  readonly #trust: RulesetTrust;
  readonly #states = new Map<number, RulesetState>();
  #state: RulesetState = initialRulesetState();
  #folded = 0;

  constructor(trust: RulesetTrust) {
    this.#trust = trust;
    this.#states.set(0, this.#state);
  }

  /** The revision of the last event folded (0: none). */
  get folded(): number {
    return this.#folded;
  }

  /** The state after every event folded so far. */
  get latest(): RulesetState {
    return this.#state;
  }

  /**
   * Folds the next stored event. Throws RangeError for an event that is not the one after the
   * last folded (the cache folds a history in order, as a worker's follower does).
   */
  add(event: StoredRuleEvent): FoldOutcome {
    if (event.revision !== this.#folded + 1) {
      throw new RangeError(`expected rule event ${this.#folded + 1}, got ${event.revision}`);
    }
    const { state, outcome } = evolveRuleset(this.#state, event, this.#trust);
    this.#state = state;
    this.#folded = event.revision;
    // After a break the revision stays the last good one, whose state is kept as it was.
    if (!this.#states.has(state.revision)) this.#states.set(state.revision, state);
    return outcome;
  }

  /** The rules decisions at `revision` were made under, or undefined when the history has no such revision. */
  at(revision: number): RulesetState | undefined {
    return this.#states.get(revision);
  }
}

/**
 * How a record was replayed:
 * - `rules`: the request decoded again and the rules at its revision evaluated with its `now`
 *   (`evaluatedAt`) and trust result (requests and re-evaluations alike);
 * - `edge`: a request refused at the edge for its value, decoded again and refused again;
 * - `edge-unrecorded`: refused at the edge for what the record does not keep (bytes that are not
 *   UTF-8 or JSON, too many, a repeated key, too deep, a body too large to record): checked as a
 *   denial the rules had no part in;
 * - `signature`: refused for its signature: decoded again, its trust result not verified and the
 *   refusal naming each failed check;
 * - `reply`: recorded and not answered for its reply subject: a denial the rules had no part in.
 */
export type ReplayCheck = "rules" | "edge" | "edge-unrecorded" | "signature" | "reply";

/** What a decision came to: the fields replay compares. */
export interface ReplayOutcome {
  readonly permitted: boolean;
  readonly message: string;
  readonly rejection: string | null;
  readonly decidingRule: string | null;
  readonly matchedRules: readonly string[];
  readonly dryRunRules: readonly string[];
  /** The ids of the rules whose expression failed. */
  readonly ruleErrors: readonly string[];
}

/** The outcome of replaying one record. */
export type ReplayResult =
  | { readonly match: true; readonly check: ReplayCheck }
  | {
      readonly match: false;
      readonly check: ReplayCheck;
      /** The fields that differ, or a reason the record could not be replayed at all. */
      readonly differs: readonly string[];
      readonly recorded: ReplayOutcome;
      readonly replayed: ReplayOutcome | null;
      readonly reason: string | null;
    };

/**
 * Replays one recorded decision under `ruleset`, the rules at its revision (undefined when the
 * history has no such revision: a mismatch). Pure. The record is rebuilt with the worker's own
 * code path (`decisionRecord` / `rejectionRecord` from what `decodePolicyValue` makes of the
 * recorded request) and compared on what the decision came to: `permitted`, `message`,
 * `rejection`, `decidingRule`, `matchedRules`, `dryRunRules` and the ids of `ruleErrors` (their
 * messages are the CEL library's diagnostics, worded as it pleases from one version to the next),
 * and on what the record says the request was (`requestId`, `kind`, `lattice`, `host`,
 * `cacheKey`, `lineage`), which an auditor groups and searches by. Not compared: who decided, when
 * and how fast, which the decision does not depend on, and the signature, which `audit verify` checks.
 */
export function replayDecision(record: UnsignedDecisionV1, ruleset: RulesetState | undefined): ReplayResult {
  const recorded = outcomeOf(record);
  if (ruleset === undefined || ruleset.revision !== record.revision) {
    return mismatch(
      "rules",
      ["revision"],
      recorded,
      null,
      `revision ${record.revision} is not in the rules history`,
    );
  }
  const context = contextOf(record);
  if (record.rejection === null) {
    const decoded = decodePolicyValue(record.request);
    const expected = decoded.ok
      ? decisionRecord(
          decoded.request,
          decideRequest(decoded.request, ruleset, context.now, trustOf(record)),
          context,
        )
      : rejectionRecord({ ...decoded, requestId: decoded.requestId ?? "" }, context);
    return compare("rules", record, expected);
  }
  if (record.answered === false) return compareRefusal("reply", record, null);
  if (record.request === null || record.truncated?.["request"] !== undefined) {
    return compareRefusal("edge-unrecorded", record, null);
  }
  if (isByteLevelRejection(record.rejection)) return compareRefusal("edge-unrecorded", record, null);
  const decoded = decodePolicyValue(record.request);
  if (!decoded.ok) {
    return compare(
      "edge",
      record,
      rejectionRecord({ ...decoded, requestId: decoded.requestId ?? "" }, context),
    );
  }
  if (record.trust.signed !== undefined) return compareRefusal("signature", record, decoded.request);
  const accepted = decisionRecord(
    decoded.request,
    decideRequest(decoded.request, ruleset, context.now, trustOf(record)),
    context,
  );
  return compare("edge", record, accepted);
}

/** What a candidate document makes of one recorded decision. */
export interface WhatIfResult {
  /** False for a record the rules had no part in (refused at the edge, for its signature, or its reply subject). */
  readonly evaluated: boolean;
  /** True when the candidate's `permitted` differs from the recorded one. */
  readonly flipped: boolean;
  readonly recorded: { readonly permitted: boolean; readonly decidingRule: string | null };
  readonly candidate: {
    readonly permitted: boolean;
    readonly message: string;
    /** The candidate's rule that decides, or null for its default. */
    readonly decidingRule: string | null;
  } | null;
  /** The component or provider the request is about (null for `kind: "unknown"` and unevaluated records). */
  readonly subject: { readonly id: string; readonly imageRef: string } | null;
  readonly lattice: string;
  readonly host: string;
  readonly kind: string;
}

/**
 * Evaluates a recorded decision's request under `candidate` (a ruleset built from a candidate
 * document) with its recorded `now` and trust result, and says whether `permitted` flips. Pure.
 * Records the rules had no part in are not evaluated and never flip.
 */
export function whatIf(record: UnsignedDecisionV1, candidate: RulesetState): WhatIfResult {
  const base = {
    recorded: { permitted: record.permitted, decidingRule: record.decidingRule },
    lattice: record.lattice,
    host: record.host,
    kind: record.kind,
  };
  const decoded = record.rejection === null ? decodePolicyValue(record.request) : null;
  if (decoded === null || !decoded.ok) {
    return { ...base, evaluated: false, flipped: false, candidate: null, subject: null };
  }
  const request = decoded.request;
  const evaluation = decideRequest(request, candidate, new Date(record.evaluatedAt), trustOf(record));
  return {
    ...base,
    evaluated: true,
    flipped: evaluation.permitted !== record.permitted,
    candidate: {
      permitted: evaluation.permitted,
      message: evaluation.message,
      decidingRule: evaluation.decidingRule,
    },
    subject: request.subject === null ? null : { id: request.subject.id, imageRef: request.subject.imageRef },
  };
}

/** The trust result a record's decision was made with, as the rules saw it. */
function trustOf(record: UnsignedDecisionV1): DecisionTrust {
  const trust = record.trust;
  return {
    verified: trust.verified,
    reasons: trust.reasons,
    signed: trust.signed ?? false,
    issuer: trust.issuer ?? null,
    tokenId: trust.tokenId ?? null,
    issuedAt: trust.issuedAt ?? null,
  };
}

function contextOf(record: UnsignedDecisionV1): DecisionContext {
  return {
    decisionId: record.decisionId,
    revision: record.revision,
    deployment: record.deployment ?? null,
    now: new Date(record.evaluatedAt),
    worker: record.worker,
    latencyMicros: record.latencyMicros,
  };
}

function outcomeOf(record: UnsignedDecisionV1): ReplayOutcome {
  return {
    permitted: record.permitted,
    message: record.message,
    rejection: record.rejection,
    decidingRule: record.decidingRule,
    matchedRules: record.matchedRules,
    dryRunRules: record.dryRunRules,
    ruleErrors: record.ruleErrors.map((e) => e.ruleId),
  };
}

const REQUEST_FIELDS = ["requestId", "kind", "lattice", "host", "cacheKey", "lineage"] as const;

function compare(check: ReplayCheck, record: UnsignedDecisionV1, expected: UnsignedDecisionV1): ReplayResult {
  const recorded = outcomeOf(record);
  const replayed = outcomeOf(expected);
  const differs = outcomeDiffers(recorded, replayed);
  for (const field of REQUEST_FIELDS) {
    if (record[field] !== expected[field]) differs.push(field);
  }
  return differs.length === 0 ? { match: true, check } : mismatch(check, differs, recorded, replayed, null);
}

/**
 * A record the rules had no part in: a denial with its refusal as message and no rule; for a
 * signature refusal also the decoded request's fields and a trust result that names each failed check.
 */
function compareRefusal(
  check: ReplayCheck,
  record: UnsignedDecisionV1,
  request: NormalizedRequest | null,
): ReplayResult {
  const recorded = outcomeOf(record);
  const replayed: ReplayOutcome = {
    permitted: false,
    message: record.rejection ?? "",
    rejection: record.rejection,
    decidingRule: null,
    matchedRules: [],
    dryRunRules: [],
    ruleErrors: [],
  };
  const differs = outcomeDiffers(recorded, replayed);
  if (request !== null) {
    const fields = {
      requestId: request.requestId,
      kind: request.kind,
      lattice: request.host.lattice,
      host: request.host.publicKey,
      cacheKey: request.cacheKey,
      lineage: request.lineage,
    };
    for (const field of REQUEST_FIELDS) {
      if (record[field] !== fields[field]) differs.push(field);
    }
  }
  if (check === "signature" && !refusalNamesTrust(record)) differs.push("trust");
  return differs.length === 0 ? { match: true, check } : mismatch(check, differs, recorded, replayed, null);
}

/** Whether a signature refusal is of an unverified request and names each failed check, in order. */
function refusalNamesTrust(record: UnsignedDecisionV1): boolean {
  const { trust, rejection } = record;
  if (trust.verified || rejection === null || trust.reasons.length === 0) return false;
  let from = 0;
  for (const code of trust.reasons) {
    const at = rejection.indexOf(`(${code})`, from);
    if (at < 0) return false;
    from = at + code.length + 2;
  }
  return true;
}

function outcomeDiffers(a: ReplayOutcome, b: ReplayOutcome): string[] {
  const differs: string[] = [];
  if (a.permitted !== b.permitted) differs.push("permitted");
  if (a.message !== b.message) differs.push("message");
  if (a.rejection !== b.rejection) differs.push("rejection");
  if (a.decidingRule !== b.decidingRule) differs.push("decidingRule");
  if (!sameList(a.matchedRules, b.matchedRules)) differs.push("matchedRules");
  if (!sameList(a.dryRunRules, b.dryRunRules)) differs.push("dryRunRules");
  if (!sameList(a.ruleErrors, b.ruleErrors)) differs.push("ruleErrors");
  return differs;
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function mismatch(
  check: ReplayCheck,
  differs: readonly string[],
  recorded: ReplayOutcome,
  replayed: ReplayOutcome | null,
  reason: string | null,
): ReplayResult {
  return { match: false, check, differs, recorded, replayed, reason };
}
