import type { StoredRuleEvent } from "@arbiter/rules";

export type { StoredRuleEvent };

/** A live tail of the rule events; `stop()` ends it. */
export interface Follower {
  stop(): Promise<void>;
  /** Resolves when the tail ends: null after `stop()`, the error when it broke on its own. */
  readonly ended: Promise<Error | null>;
}

/**
 * The append-only rule event log. Revisions start at 1 and have no gaps; an append names the
 * revision it expects to follow, so two writers can never both succeed from the same read.
 */
export interface RuleEventStore {
  /** Appends the signed event text after `expectedRevision`; throws `RuleConflictError` if stale. */
  append(text: string, expectedRevision: number): Promise<number>;
  /** The latest revision, 0 when there are no events. */
  lastRevision(): Promise<number>;
  /** The event stored at `revision`, or null when the stream has none there. */
  get(revision: number): Promise<StoredRuleEvent | null>;
  /** Events with `from <= revision <= to` (defaults: 1 and the latest at call time), in order. */
  read(range?: { from?: number; to?: number }): AsyncIterable<StoredRuleEvent>;
  /** Calls `onEvent` for every event from `from` on, in order, including ones appended later. */
  follow(from: number, onEvent: (event: StoredRuleEvent) => void): Promise<Follower>;
}

/** The latest rules snapshot (its signed JSON text), so a worker need not read all history. */
export interface SnapshotStore {
  load(): Promise<string | null>;
  /**
   * Stores the snapshot unless one of the same deployment at a later revision is already there
   * (a snapshot of another deployment is replaced).
   */
  save(text: string, revision: number): Promise<void>;
}

/**
 * Decisions recorded together, as one message: a worker signs the decisions it makes in one turn
 * together and stores them together, so it pays for one stored message and one acknowledgement
 * per batch instead of per decision.
 */
export interface DecisionBatch {
  /** The decisions' ids, in order; the first is the batch's de-duplication id. */
  readonly decisionIds: readonly string[];
  /**
   * Their JSON texts in UTF-8 (records without `proof` and `signature`), one per line
   * (JSON.stringify never writes a raw newline).
   */
  readonly lines: Uint8Array;
  /** The batch signature over the lines (`signBatch` in @arbiter/trust), base64url. */
  readonly signature: string;
  /**
   * Set when every decision of the batch is a re-evaluation: the message then says so in its
   * `Arbiter-Batch-Cause` header, and the active index's projection (which never indexes a
   * re-evaluation) leaves it unread.
   */
  readonly reevaluations?: boolean;
}

/**
 * A stored decision: the sequence of the message that holds it, its place there, and its text,
 * sealed on reading (its inclusion proof and the batch signature appended, so that it verifies on
 * its own with `verifySealedJson`). A line that cannot be sealed is read as stored, and so is
 * every line of a read with `sealed: false`.
 */
export interface StoredDecision {
  readonly seq: number;
  readonly index: number;
  readonly text: string;
}

/** The append-only decision log. */
export interface DecisionLog {
  /**
   * Appends a batch as one message, de-duplicated on its first decision's id (a retried batch is
   * stored once); resolves after the acknowledgement. Throws TypeError for a malformed batch and
   * StoreUnavailableError when the store does not acknowledge, or when the id already names a
   * message that is not this very batch (then this batch is not stored).
   */
  append(batch: DecisionBatch): Promise<{ seq: number; duplicate: boolean }>;
  /** Decisions in log order, optionally filtered by kind and host, from a sequence or time. */
  read(filter?: DecisionFilter): AsyncIterable<StoredDecision>;
}

/** Which decisions to read. */
export interface DecisionFilter {
  readonly kind?: string;
  readonly host?: string;
  readonly fromSeq?: number;
  readonly since?: Date;
  /**
   * False: each decision's text as stored, without the inclusion proof and batch signature that
   * make it verifiable on its own (cheaper, for readers that do not verify). Default true.
   */
  readonly sealed?: boolean;
  /** Keep following new decisions instead of stopping at the end. */
  readonly follow?: boolean;
  readonly signal?: AbortSignal;
}

/** Everything Arbiter keeps, behind one handle. */
export interface ArbiterStore {
  readonly rules: RuleEventStore;
  readonly snapshots: SnapshotStore;
  readonly decisions: DecisionLog;
  close(): Promise<void>;
}
