import { DecisionV1, type UnsignedDecisionV1 } from "@arbiter/protocol";
import type { RevisionCache, StoredRuleEvent } from "@arbiter/rules";
import type { DecisionFilter, DecisionLog, RuleEventStore, StoredDecision } from "./contracts.js";

/** Which recorded decisions an audit reads: a time window (by `evaluatedAt`), a lattice, a host. */
export interface AuditWindow {
  readonly since?: Date;
  readonly until?: Date;
  readonly lattice?: string;
  readonly host?: string;
}

/**
 * A recorded decision as an audit reads it: read as stored, without the proof and signature that
 * `audit verify` checks, so without them in the schema; every other field is checked.
 */
const AuditedRecord = DecisionV1.omit({ proof: true, signature: true });

/**
 * One decision of the window, in stream order: where it is stored (message sequence, place in the
 * batch) and the record, or why its text is not a DecisionV1 (then `record` is null).
 */
export type AuditedDecision =
  | {
      readonly seq: number;
      readonly index: number;
      readonly record: UnsignedDecisionV1;
      readonly problem: null;
    }
  | { readonly seq: number; readonly index: number; readonly record: null; readonly problem: string };

/**
 * The decisions of `window` in stream order, read unsealed (an audit that re-evaluates does not
 * verify signatures: `audit verify` does) and each parsed once by {@link auditDecisionText}.
 */
export async function* readDecisionWindow(
  log: DecisionLog,
  window: AuditWindow = {},
): AsyncGenerator<AuditedDecision> {
  for await (const stored of log.read(decisionReadFilter(window))) {
    const item = auditDecisionText(stored, window);
    if (item !== null) yield item;
  }
}

/** What an audit of `window` reads from the decision log: every record from its start, unsealed. */
export function decisionReadFilter(window: AuditWindow): DecisionFilter {
  return window.since ? { sealed: false, since: window.since } : { sealed: false };
}

/**
 * One stored decision's text parsed once (JSON, then the DecisionV1 schema without its proof and
 * signature), or null when the record is outside `window`. Pure. A text that is not a DecisionV1
 * is returned with its problem, whatever the window: it cannot be placed in it, and an audit must
 * not pass over it in silence.
 */
export function auditDecisionText(stored: StoredDecision, window: AuditWindow): AuditedDecision | null {
  let raw: unknown;
  try {
    raw = JSON.parse(stored.text);
  } catch {
    return { seq: stored.seq, index: stored.index, record: null, problem: "the record is not JSON" };
  }
  const parsed = AuditedRecord.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue ? `${issue.path.join(".") || "record"}: ${issue.message}` : "invalid";
    return { seq: stored.seq, index: stored.index, record: null, problem: `not a DecisionV1 (${where})` };
  }
  const record = parsed.data;
  if (window.lattice !== undefined && record.lattice !== window.lattice) return null;
  if (window.host !== undefined && record.host !== window.host) return null;
  if (window.since !== undefined || window.until !== undefined) {
    const at = Date.parse(record.evaluatedAt);
    if (window.since !== undefined && at < window.since.getTime()) return null;
    if (window.until !== undefined && at > window.until.getTime()) return null;
  }
  return { seq: stored.seq, index: stored.index, record, problem: null };
}

/**
 * Folds into `cache` the rule events it has not folded yet, up to `upTo` (default: the last one
 * stored), in stream order, handing each to `folded` too when given. Resolves with the revision
 * folded up to.
 */
export async function foldRuleEvents(
  rules: RuleEventStore,
  cache: RevisionCache,
  upTo?: number,
  folded?: (event: StoredRuleEvent) => void,
): Promise<number> {
  const from = cache.folded + 1;
  if (upTo !== undefined && upTo < from) return cache.folded;
  for await (const event of rules.read(upTo === undefined ? { from } : { from, to: upTo })) {
    cache.add(event);
    folded?.(event);
  }
  return cache.folded;
}
