import { DecisionV1, type UnsignedDecisionV1, type WorkerEnrollmentV1 } from "@arbiter/protocol";
import { isEnrolledAt } from "@arbiter/rules";
import { verifyBatch, verifySealedJson } from "@arbiter/trust";
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
 * enrolled (its `deployment` is signed with it). `checkSeal` checks the seal (default
 * `verifySealedJson`; a reader of whole batches checks each batch's signature once). Never throws.
 */
export function verifyDecision(
  text: string,
  enrolled: EnrolledWorkers,
  checkSeal: (text: string, publicKey: string) => boolean = verifySealedJson,
): DecisionVerification {
  const parsed = DecisionV1.safeParse(parseJsonOrNull(text));
  if (!parsed.success) return { valid: false, reason: "not a sealed decision record", decision: null };
  const decision = parsed.data;
  const key = decision.worker.publicKey;
  if (!checkSeal(text, key)) {
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

/** A stored decision message's records without their seals, as the worker signed them. */
const UnsealedDecision = DecisionV1.omit({ proof: true, signature: true });

/** The outcome of verifying one stored decision message as a whole. */
export type DecisionBatchVerification =
  | {
      readonly valid: true;
      /** The records signed by an enrolled key, in order (those of unenrolled revisions left out). */
      readonly decisions: readonly UnsignedDecisionV1[];
      /** How many records were left out because the key was not enrolled at their revision. */
      readonly unenrolled: number;
    }
  | { readonly valid: false; readonly reason: string };

/**
 * Verifies a message of the decision log at once: every line a decision record naming one worker
 * key, the batch signature (header `Arbiter-Batch-Signature`) that key's over all of them, one
 * signature check for the message; records that name another deployment (or none) and records of
 * revisions at which the key was not enrolled (nor configured) are left out, as verifyDecision
 * refuses them. A message that is not such a batch is not valid. Never throws.
 */
export function verifyDecisionBatch(
  lines: Uint8Array,
  signature: string | undefined,
  enrolled: EnrolledWorkers,
): DecisionBatchVerification {
  if (signature === undefined) return { valid: false, reason: "the message carries no batch signature" };
  const bodies: Uint8Array[] = [];
  for (let start = 0; start <= lines.length; ) {
    let end = lines.indexOf(0x0a, start);
    if (end === -1) end = lines.length;
    bodies.push(lines.subarray(start, end));
    start = end + 1;
  }
  const decisions: UnsignedDecisionV1[] = [];
  for (const body of bodies) {
    const parsed = UnsealedDecision.safeParse(parseJsonOrNull(Buffer.from(body).toString("utf8")));
    if (!parsed.success) return { valid: false, reason: "a line is not a decision record" };
    decisions.push(parsed.data);
  }
  const key = decisions[0]?.worker.publicKey;
  if (key === undefined || decisions.some((d) => d.worker.publicKey !== key)) {
    return { valid: false, reason: "the records do not name one worker key" };
  }
  if (!verifyBatch(bodies, signature, key)) {
    return { valid: false, reason: `the batch signature by ${key} does not verify` };
  }
  const deployment = enrolled.deployment;
  if (deployment === null) {
    return { valid: false, reason: "the rules stream has no genesis event: no deployment to check against" };
  }
  // The same rule as verifyDecision: a record names this deployment, whatever key sealed it.
  const here = decisions.filter((d) => d.deployment === deployment);
  if (here.length === 0) {
    return { valid: false, reason: `no record of the batch was made in this deployment (${deployment})` };
  }
  const configured = enrolled.configured?.includes(key) ?? false;
  const kept = configured ? here : here.filter((d) => isEnrolledAt(enrolled.workers, key, d.revision));
  if (kept.length === 0)
    return { valid: false, reason: `signed by worker key ${key}, which was not enrolled` };
  return { valid: true, decisions: kept, unenrolled: here.length - kept.length };
}
