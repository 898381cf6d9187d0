import type { DecodedRequest, NormalizedRequest, UnsignedDecisionV1 } from "@arbiter/protocol";
import { type Evaluation, evaluate } from "./evaluate.js";
import type { RulesetState } from "./ruleset.js";

// How a worker turns a request into its decision record, here so that replaying a record runs
// the very code that made it (the worker re-exports these).

/**
 * What the signature checks found about a request, as decisions record it and the rules see it
 * (`trust`): the worker's TrustResult, less the problems' messages.
 */
export interface DecisionTrust {
  readonly verified: boolean;
  readonly reasons: readonly string[];
  readonly signed: boolean;
  readonly issuer: string | null;
  readonly tokenId: string | null;
  readonly issuedAt: string | null;
}

/** The trust of a request whose signature was not checked. */
const NOT_CHECKED: DecisionTrust = Object.freeze({
  verified: false,
  reasons: [],
  signed: false,
  issuer: null,
  tokenId: null,
  issuedAt: null,
});

/**
 * Decides one request under the folded rules. Pure: the same request, ruleset and `now` always
 * give the same evaluation. With no rules applied yet, every request is denied and told why.
 */
export function decideRequest(
  request: NormalizedRequest,
  ruleset: RulesetState,
  now: Date,
  trust: DecisionTrust = NOT_CHECKED,
): Evaluation {
  if (ruleset.compiled === null) {
    return {
      permitted: false,
      message: `no rules have been applied yet (revision ${ruleset.revision}); Arbiter denies until they are`,
      decidingRule: null,
      matchedRules: [],
      dryRunRules: [],
      errors: [],
    };
  }
  return evaluate(ruleset.compiled, {
    kind: request.kind,
    host: request.host,
    subject: request.subject,
    claims: request.claims,
    invocation: request.invocation,
    input: request.input,
    now,
    trust: {
      verified: trust.verified,
      reasons: [...trust.reasons],
      signed: trust.signed,
      issuer: trust.issuer,
      tokenId: trust.tokenId,
    },
  });
}

/** Who made a decision. */
export interface DecidingWorker {
  readonly id: string;
  readonly publicKey: string;
}

/**
 * What every record of one request shares: its id, the revision, deployment and clock it was
 * decided at, who decided.
 */
export interface DecisionContext {
  readonly decisionId: string;
  readonly revision: number;
  /** The deployment of the rules the worker serves (null before the genesis event). */
  readonly deployment: string | null;
  readonly now: Date;
  readonly worker: DecidingWorker;
  readonly latencyMicros: number;
}

/**
 * Builds the record of a decision on a request (before it is signed). With `trust` (signatures
 * checked), the record's `trust` carries the checks' outcome; without, it is unverified.
 */
export function decisionRecord(
  request: NormalizedRequest,
  evaluation: Evaluation,
  context: DecisionContext,
  trust?: DecisionTrust,
): UnsignedDecisionV1 {
  return {
    decisionId: context.decisionId,
    requestId: request.requestId,
    lattice: request.host.lattice,
    host: request.host.publicKey,
    kind: request.kind,
    cacheKey: request.cacheKey,
    lineage: request.lineage,
    rejection: null,
    permitted: evaluation.permitted,
    message: evaluation.message,
    decidingRule: evaluation.decidingRule,
    matchedRules: evaluation.matchedRules,
    dryRunRules: evaluation.dryRunRules,
    ruleErrors: evaluation.errors,
    revision: context.revision,
    deployment: context.deployment,
    evaluatedAt: isoText(context.now),
    worker: context.worker,
    trust:
      trust === undefined
        ? { verified: false, reasons: [] }
        : {
            verified: trust.verified,
            reasons: [...trust.reasons],
            signed: trust.signed,
            issuer: trust.issuer,
            tokenId: trust.tokenId,
            issuedAt: trust.issuedAt,
          },
    cause: "request",
    latencyMicros: context.latencyMicros,
    // Last, so that encodeDecisionRecord can append the request's own bytes.
    request: request.input,
  };
}

/**
 * The evaluation of a request denied for its signature before the rules ran: `message` says why
 * (the record's `rejection` carries it too, so replaying the rules leaves it alone).
 */
export function trustRefusal(message: string): Evaluation {
  return { permitted: false, message, decidingRule: null, matchedRules: [], dryRunRules: [], errors: [] };
}

/** Longest identifier-like text (`requestId`, `kind`, host fields) a rejection record keeps. */
const MAX_REJECTION_FIELD = 256;
/** Longest reason a rejection record keeps. */
const MAX_REJECTION_REASON = 1024;

/**
 * Builds the record of a request refused at the edge: denied, with the reason as its message.
 * A request without a usable id is answered (and recorded) with the id `""`. Its text fields are
 * bounded, cut ones listed with their original length in `truncated`, so that the record of a
 * rejection always fits the decision log once its request body is left out.
 */
export function rejectionRecord(
  rejected: Omit<Extract<DecodedRequest, { ok: false }>, "requestId"> & { requestId: string },
  context: DecisionContext,
): UnsignedDecisionV1 {
  const host = pick(rejected.input, "host");
  const truncated: Record<string, number> = {};
  const bound = (field: string, value: string, max = MAX_REJECTION_FIELD): string => {
    if (value.length <= max) return value;
    truncated[field] = value.length;
    return `${value.slice(0, max)}…`;
  };
  const reason = bound("rejection", rejected.reason, MAX_REJECTION_REASON);
  const record: UnsignedDecisionV1 = {
    decisionId: context.decisionId,
    requestId: bound("requestId", rejected.requestId),
    lattice: bound("lattice", str(pick(host, "lattice")) ?? str(pick(host, "latticeId")) ?? ""),
    host: bound("host", str(pick(host, "publicKey")) ?? ""),
    kind: bound("kind", rejected.kind ?? "invalid"),
    cacheKey: "",
    lineage: null,
    rejection: reason,
    permitted: false,
    message: reason,
    decidingRule: null,
    matchedRules: [],
    dryRunRules: [],
    ruleErrors: [],
    revision: context.revision,
    deployment: context.deployment,
    evaluatedAt: isoText(context.now),
    worker: context.worker,
    trust: { verified: false, reasons: [] },
    cause: "request",
    latencyMicros: context.latencyMicros,
    request: rejected.input,
  };
  if (Object.keys(truncated).length > 0) {
    const { request, ...head } = record;
    return { ...head, truncated, request };
  }
  return record;
}

let lastIso = { ms: Number.NaN, text: "" };

/**
 * `now.toISOString()`, from a one-entry cache: the decisions of a burst mostly share their
 * millisecond, and formatting a date was a visible share of building a record. Throws as
 * toISOString does for an invalid date (NaN never equals the cached value).
 */
function isoText(now: Date): string {
  const ms = now.getTime();
  if (ms !== lastIso.ms) lastIso = { ms, text: now.toISOString() };
  return lastIso.text;
}

function pick(value: unknown, key: string): unknown {
  return typeof value === "object" && value !== null && !Array.isArray(value)
    ? (value as Record<string, unknown>)[key]
    : undefined;
}

function str(value: unknown): string | undefined {
  return typeof value === "string" ? value : undefined;
}
