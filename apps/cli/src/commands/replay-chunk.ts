import type { UnsignedDecisionV1 } from "@arbiter/protocol";
import { type ReplayCheck, type RevisionCache, replayDecision } from "@arbiter/rules";
import { type AuditWindow, auditDecisionText } from "@arbiter/store";
import type { ReplayMismatch } from "./audit-replay.js";

/** Consecutive stored decisions, as read from the log (unsealed), to be replayed together. */
export interface ReplayChunk {
  readonly seqs: number[];
  readonly indexes: number[];
  readonly texts: string[];
}

/**
 * What became of one record of a chunk, apart from those that came out as recorded: a mismatch,
 * or a record of a revision past the rules the replayer has folded, to be replayed by the caller
 * once it has read more of the history.
 */
export type ChunkEntry =
  | { readonly kind: "mismatch"; readonly mismatch: ReplayMismatch }
  | {
      readonly kind: "later-revision";
      readonly seq: number;
      readonly index: number;
      readonly record: UnsignedDecisionV1;
    };

/** A replayed chunk: the records in the window, the checks made, and its entries in stream order. */
export interface ChunkResult {
  readonly decisions: number;
  readonly checks: Record<ReplayCheck, number>;
  readonly entries: ChunkEntry[];
  /** The sequence of the chunk's last message. */
  readonly lastSeq: number;
}

/** No checks made yet. */
export function noChecks(): Record<ReplayCheck, number> {
  return { rules: 0, edge: 0, "edge-unrecorded": 0, signature: 0, reply: 0 };
}

/** A record that came out otherwise than recorded, as the report lists it. */
export function replayMismatch(
  seq: number,
  index: number,
  record: UnsignedDecisionV1,
  ruleset: ReturnType<RevisionCache["at"]>,
): { readonly check: ReplayCheck; readonly mismatch: ReplayMismatch | null } {
  const result = replayDecision(record, ruleset);
  if (result.match) return { check: result.check, mismatch: null };
  return {
    check: result.check,
    mismatch: {
      seq,
      index,
      decisionId: record.decisionId,
      revision: record.revision,
      check: result.check,
      differs: result.differs,
      recorded: result.recorded,
      replayed: result.replayed,
      reason: result.reason,
    },
  };
}

/**
 * Replays a chunk under the revisions `cache` has folded: each text parsed once, each record in
 * `window` replayed by `replayDecision`. Pure apart from reading `cache`; the same on the main
 * thread and in a worker thread.
 */
export function replayChunk(chunk: ReplayChunk, cache: RevisionCache, window: AuditWindow): ChunkResult {
  const checks = noChecks();
  const entries: ChunkEntry[] = [];
  let decisions = 0;
  const { seqs, indexes, texts } = chunk;
  for (let i = 0; i < texts.length; i++) {
    const item = auditDecisionText({ seq: seqs[i]!, index: indexes[i]!, text: texts[i]! }, window);
    if (item === null) continue;
    decisions++;
    const { record } = item;
    if (record === null) {
      entries.push({
        kind: "mismatch",
        mismatch: {
          seq: item.seq,
          index: item.index,
          decisionId: null,
          revision: null,
          check: null,
          differs: [],
          recorded: null,
          replayed: null,
          reason: item.problem,
        },
      });
      continue;
    }
    if (record.revision > cache.folded) {
      entries.push({ kind: "later-revision", seq: item.seq, index: item.index, record });
      continue;
    }
    const { check, mismatch } = replayMismatch(item.seq, item.index, record, cache.at(record.revision));
    checks[check]++;
    if (mismatch !== null) entries.push({ kind: "mismatch", mismatch });
  }
  return { decisions, checks, entries, lastSeq: seqs[seqs.length - 1] ?? 0 };
}
