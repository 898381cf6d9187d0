import type { DecodedRequest, NormalizedRequest, UnsignedDecisionV1 } from "@arbiter/protocol";
import { type Evaluation, evaluate } from "@arbiter/rules";
import type { RulesetState } from "@arbiter/store";

/** What the zero-trust checks found about a request (none apply to policy requests yet). */
export interface TrustResult {
  readonly verified: boolean;
  readonly reasons: readonly string[];
}

/** The trust result recorded when nothing was verified. */
export const UNVERIFIED: TrustResult = Object.freeze({ verified: false, reasons: [] });

/**
 * Decides one request under the folded rules. Pure: the same request, ruleset and `now` always
 * give the same evaluation. With no rules applied yet, every request is denied and told why.
 */
export function decideRequest(
  request: NormalizedRequest,
  ruleset: RulesetState,
  now: Date,
  trust: TrustResult = UNVERIFIED,
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
    trust: { verified: trust.verified, reasons: [...trust.reasons] },
  });
}

/** Who made a decision. */
export interface DecidingWorker {
  readonly id: string;
  readonly publicKey: string;
}

/** Builds the record of a decision on a request (before it is signed). */
export function decisionRecord(
  request: NormalizedRequest,
  evaluation: Evaluation,
  context: { decisionId: string; revision: number; now: Date; worker: DecidingWorker; latencyMicros: number },
): UnsignedDecisionV1 {
  return {
    decisionId: context.decisionId,
    requestId: request.requestId,
    lattice: request.host.lattice,
    host: request.host.publicKey,
    kind: request.kind,
    cacheKey: request.cacheKey,
    lineage: request.lineage,
    request: request.input,
    rejection: null,
    permitted: evaluation.permitted,
    message: evaluation.message,
    decidingRule: evaluation.decidingRule,
    matchedRules: evaluation.matchedRules,
    dryRunRules: evaluation.dryRunRules,
    ruleErrors: evaluation.errors,
    revision: context.revision,
    evaluatedAt: context.now.toISOString(),
    worker: context.worker,
    trust: { verified: UNVERIFIED.verified, reasons: [...UNVERIFIED.reasons] },
    cause: "request",
    latencyMicros: context.latencyMicros,
  };
}

/**
 * Builds the record of a request refused at the edge: denied, with the reason as its message.
 * A request without a usable id is answered (and recorded) with the id `""`.
 */
export function rejectionRecord(
  rejected: Omit<Extract<DecodedRequest, { ok: false }>, "requestId"> & { requestId: string },
  context: { decisionId: string; revision: number; now: Date; worker: DecidingWorker; latencyMicros: number },
): UnsignedDecisionV1 {
  const host = pick(rejected.input, "host");
  return {
    decisionId: context.decisionId,
    requestId: rejected.requestId,
    lattice: str(pick(host, "lattice")) ?? str(pick(host, "latticeId")) ?? "",
    host: str(pick(host, "publicKey")) ?? "",
    kind: rejected.kind ?? "invalid",
    cacheKey: "",
    lineage: null,
    request: rejected.input,
    rejection: rejected.reason,
    permitted: false,
    message: rejected.reason,
    decidingRule: null,
    matchedRules: [],
    dryRunRules: [],
    ruleErrors: [],
    revision: context.revision,
    evaluatedAt: context.now.toISOString(),
    worker: context.worker,
    trust: { verified: false, reasons: [] },
    cause: "request",
    latencyMicros: context.latencyMicros,
  };
}

function pick(value: unknown, key: string): unknown {
  return typeof value === "object" && value !== null && !Array.isArray(value)
    ? (value as Record<string, unknown>)[key]
    : undefined;
}

function str(value: unknown): string | undefined {
  return typeof value === "string" ? value : undefined;
}
