import { DecisionV1, type WorkerEnrollmentV1 } from "@arbiter/protocol";
import { isEnrolledAt } from "@arbiter/rules";
import { verifySealedJson } from "@arbiter/trust";
import { parseJsonOrNull } from "./text.js";

/**
 * Which decisions belong here: those of this deployment, signed by worker keys enrolled in its
 * rules stream or configured.
 */
export interface EnrolledWorkers {
  /** The deployment the rules stream belongs to (`RulesetState.deployment`); a record must name it. */
  readonly deployment: string | null;
  /** The enrollment periods folded from the rules stream (`RulesetState.workers`). */
  readonly workers: readonly WorkerEnrollmentV1[];
  /** Keys enrolled by configuration (`ARBITER_WORKER_KEYS`), valid at every revision. */
  readonly configured?: readonly string[];
}

/** The outcome of verifying one stored decision. */
export type DecisionVerification =
  | { readonly valid: true; readonly decision: DecisionV1 }
  | { readonly valid: false; readonly reason: string; readonly decision: DecisionV1 | null };

/**
 * Verifies one sealed decision text as read from the log: a `DecisionV1`, whose proof leads to a
 * batch root signed by the worker key it names, made in this deployment, and that key enrolled at
 * the record's rules revision (or configured). A key made by whoever could append to the log
 * verifies nothing, nor does a record copied from another deployment where the same key is
 * enrolled (its `deployment` is signed with it). Never throws.
 */
export function verifyDecision(text: string, enrolled: EnrolledWorkers): DecisionVerification {
  const parsed = DecisionV1.safeParse(parseJsonOrNull(text));
  if (!parsed.success) return { valid: false, reason: "not a sealed decision record", decision: null };
  const decision = parsed.data;
  const key = decision.worker.publicKey;
  if (!verifySealedJson(text, key)) {
    return { valid: false, reason: `the batch signature by ${key} does not verify`, decision };
  }
  if (enrolled.deployment === null) {
    return {
      valid: false,
      reason: "the rules stream has no genesis event: no deployment to check against",
      decision,
    };
  }
  if (decision.deployment === undefined) {
    return {
      valid: false,
      reason: "names no deployment (written before decisions were bound to theirs)",
      decision,
    };
  }
  if (decision.deployment !== enrolled.deployment) {
    return {
      valid: false,
      reason: `made in deployment ${decision.deployment ?? "(none: before the genesis event)"}, not in this one (${enrolled.deployment})`,
      decision,
    };
  }
  if (enrolled.configured?.includes(key) || isEnrolledAt(enrolled.workers, key, decision.revision)) {
    return { valid: true, decision };
  }
  const ever = enrolled.workers.some((w) => w.publicKey === key);
  return {
    valid: false,
    reason: ever
      ? `signed by worker key ${key}, which was not enrolled at revision ${decision.revision}`
      : `signed by worker key ${key}, which was never enrolled`,
    decision,
  };
}
