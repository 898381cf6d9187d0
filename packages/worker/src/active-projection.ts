import {
  type ActiveDecisionV1,
  type DecodedRequest,
  decodePolicyValue,
  type NormalizedRequest,
  type PolicyOverrideV1,
  type RevocationV1,
  type UnsignedDecisionV1,
} from "@arbiter/protocol";
import type { Evaluation, RulesetState } from "@arbiter/rules";
import { decideRequest } from "./decide.js";
import type { TrustResult } from "./request-signatures.js";

/** What the projection does with one verified decision record. */
export type Projection =
  | { readonly action: "put"; readonly entry: ActiveDecisionV1 }
  | { readonly action: "skip"; readonly reason: string };

/**
 * How one verified decision changes the active index, given the entry now stored for its
 * (lattice, host, cacheKey). Pure. A host's answered request becomes the entry (the latest
 * request for a cache key is the one the host caches); a re-evaluation is left to the revoker
 * that made it (see {@link reevaluate}); a request that was not
 * answered, or has no cache key, is not cached by any host and stays out.
 */
export function projectDecision(
  decision: UnsignedDecisionV1,
  seq: number,
  existing: ActiveDecisionV1 | null,
): Projection {
  if (decision.answered === false) return { action: "skip", reason: "not answered" };
  if (decision.cacheKey === "") return { action: "skip", reason: "no cache key" };
  // The revoker that made a re-evaluation puts its entry itself, once the override is out:
  // projecting it first would let a scan done again find the new outcome and skip an override
  // that was never sent.
  if (decision.cause === "reevaluation") return { action: "skip", reason: "re-evaluation" };
  if (existing !== null && existing.seq > seq) return { action: "skip", reason: "superseded" };
  // A host never sends one request id twice: a second decision under the entry's id is a copy
  // made by whoever read the id (another body, other claims), not what the host cached.
  if (
    existing !== null &&
    existing.requestId === decision.requestId &&
    existing.decisionId !== decision.decisionId
  ) {
    return { action: "skip", reason: "request id already indexed" };
  }
  return {
    action: "put",
    entry: {
      lattice: decision.lattice,
      host: decision.host,
      cacheKey: decision.cacheKey,
      requestId: decision.requestId,
      kind: decision.kind,
      permitted: decision.permitted,
      message: decision.message,
      revision: decision.revision,
      decisionId: decision.decisionId,
      seq,
      evaluatedAt: decision.evaluatedAt,
      rejection: decision.rejection,
      request: decision.request,
      trust: {
        verified: decision.trust.verified,
        reasons: decision.trust.reasons,
        ...(decision.trust.signed === undefined ? {} : { signed: decision.trust.signed }),
        ...(decision.trust.issuer === undefined ? {} : { issuer: decision.trust.issuer }),
        ...(decision.trust.tokenId === undefined ? {} : { tokenId: decision.trust.tokenId }),
      },
      expiresAt: claimsExpiry(decision.request),
    },
  };
}

/**
 * The `expiresAt` of the request's claims: 1.x `request.claims`, or a performInvocation's target's;
 * a 0.82 (or Elixir) request's `source`, where the rules read its claims from too.
 */
function claimsExpiry(request: unknown): number | null {
  const body = field(request, "request");
  // As the decoder tells the lineages apart: an `action` and no `kind`.
  const legacy = field(request, "action") !== undefined && field(request, "kind") === undefined;
  const claims = legacy
    ? field(request, "source")
    : (field(body, "claims") ?? field(field(body, "target"), "claims"));
  const expiresAt = field(claims, "expiresAt");
  return typeof expiresAt === "number" ? expiresAt : null;
}

function field(value: unknown, name: string): unknown {
  return typeof value === "object" && value !== null && !Array.isArray(value)
    ? (value as Record<string, unknown>)[name]
    : undefined;
}

/** An entry evaluated again under new rules, and whether its outcome differs from the cached one. */
export interface Reevaluation {
  readonly entry: ActiveDecisionV1;
  readonly request: NormalizedRequest;
  readonly trust: TrustResult;
  readonly evaluation: Evaluation;
  /** The clock value the evaluation saw: the re-evaluation's record must carry it, for replay. */
  readonly now: Date;
  readonly changed: boolean;
}

/**
 * Requests of entries already decoded, by the request object: a mirror of the index keeps its
 * entries between scans, and an entry changed by a scan keeps its request, so each revision
 * evaluates them without decoding them again.
 */
const decodedRequests = new WeakMap<object, DecodedRequest>();

/** The trust result each stored trust stands for, by the stored object (kept like the requests). */
const trustResults = new WeakMap<ActiveDecisionV1["trust"], TrustResult>();

/**
 * The request of a cached decision as its re-evaluations see it, decoded once for all of them; null
 * when it cannot be decoded (cut for size) or is not the entry's (another cache key).
 */
export function reevaluatedRequest(entry: ActiveDecisionV1): NormalizedRequest | null {
  const held = typeof entry.request === "object" && entry.request !== null ? entry.request : null;
  let decoded = held === null ? undefined : decodedRequests.get(held);
  if (decoded === undefined) {
    decoded = decodePolicyValue(entry.request);
    if (held !== null) decodedRequests.set(held, decoded);
  }
  return decoded.ok && decoded.request.cacheKey === entry.cacheKey ? decoded.request : null;
}

/** The trust result a stored trust stands for, one object per stored one. */
export function trustResultOf(stored: ActiveDecisionV1["trust"]): TrustResult {
  let trust = trustResults.get(stored);
  if (trust === undefined) {
    trust = {
      verified: stored.verified,
      reasons: stored.reasons,
      signed: stored.signed ?? false,
      issuer: stored.issuer ?? null,
      tokenId: stored.tokenId ?? null,
      issuedAt: null,
      problems: [],
    };
    trustResults.set(stored, trust);
  }
  return trust;
}

/**
 * Evaluates a cached decision again under `ruleset` at `now`, with the trust result it was decided
 * with. Pure. Null when the outcome cannot depend on the rules (a request refused at the edge keeps
 * its refusal, whatever the rules say) or the stored request cannot be decoded (cut for size).
 */
export function reevaluate(entry: ActiveDecisionV1, ruleset: RulesetState, now: Date): Reevaluation | null {
  if (entry.rejection !== null || ruleset.compiled === null) return null;
  const request = reevaluatedRequest(entry);
  if (request === null) return null;
  const trust = trustResultOf(entry.trust);
  const evaluation = decideRequest(request, ruleset, now, trust);
  return {
    entry,
    request,
    trust,
    evaluation,
    now,
    changed: evaluation.permitted !== entry.permitted || evaluation.message !== entry.message,
  };
}

/**
 * The override for a changed entry: both request id spellings (1.x reads `requestId`, the Elixir
 * host `request_id`) and always a string message.
 */
export function overrideFor(entry: ActiveDecisionV1, evaluation: Evaluation): PolicyOverrideV1 {
  return {
    requestId: entry.requestId,
    request_id: entry.requestId,
    permitted: evaluation.permitted,
    message: evaluation.message,
  };
}

/** The revocation record of a changed entry. */
export function revocationFor(
  entry: ActiveDecisionV1,
  evaluation: Evaluation,
  revision: number,
  at: string,
): RevocationV1 {
  return {
    requestId: entry.requestId,
    lattice: entry.lattice,
    host: entry.host,
    cacheKey: entry.cacheKey,
    from: { permitted: entry.permitted, message: entry.message },
    to: { permitted: evaluation.permitted, message: evaluation.message },
    revision,
    at,
  };
}
