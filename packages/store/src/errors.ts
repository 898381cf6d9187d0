import { ArbiterError, ErrorCode, isArbiterError } from "@arbiter/protocol";

/**
 * An append whose expected revision is not the current one: someone else changed the rules
 * since the writer read them. The one place JetStream's "wrong last sequence" becomes this.
 */
export class RuleConflictError extends ArbiterError {
  readonly expected: number;
  readonly actual: number | null;

  constructor(expected: number, actual: number | null, options?: ErrorOptions) {
    super(
      ErrorCode.RuleConflict,
      actual === null
        ? `the rules changed since revision ${expected}; read them again and retry`
        : `the rules are at revision ${actual}, not ${expected}; read them again and retry`,
      options,
    );
    this.name = "RuleConflictError";
    this.expected = expected;
    this.actual = actual;
  }
}

/** True when `err` is a {@link RuleConflictError}. */
export function isRuleConflictError(err: unknown): err is RuleConflictError {
  return isArbiterError(err, ErrorCode.RuleConflict);
}

/** A revision that does not exist (yet) in the rule event stream. */
export class RevisionNotFoundError extends ArbiterError {
  readonly revision: number;

  constructor(revision: number, latest: number) {
    super(
      ErrorCode.RevisionNotFound,
      `revision ${revision} does not exist; the latest revision is ${latest}`,
    );
    this.name = "RevisionNotFoundError";
    this.revision = revision;
  }
}

/** True when `err` is a {@link RevisionNotFoundError}. */
export function isRevisionNotFoundError(err: unknown): err is RevisionNotFoundError {
  return isArbiterError(err, ErrorCode.RevisionNotFound);
}

/**
 * JetStream (or the store behind it) did not answer or refused a write. `jsErrCode` is the
 * JetStream error code (`err_code`, e.g. 10077 for a full stream) when JetStream refused one.
 */
export class StoreUnavailableError extends ArbiterError {
  readonly jsErrCode: number | null;

  constructor(message: string, options?: ErrorOptions & { jsErrCode?: number | null }) {
    super(ErrorCode.StoreUnavailable, message, options);
    this.name = "StoreUnavailableError";
    this.jsErrCode =
      options?.jsErrCode ??
      (options?.cause instanceof StoreUnavailableError ? options.cause.jsErrCode : null);
  }
}

/** True when `err` is a {@link StoreUnavailableError}. */
export function isStoreUnavailableError(err: unknown): err is StoreUnavailableError {
  return isArbiterError(err, ErrorCode.StoreUnavailable);
}

/**
 * The rules history does not chain where a writer would append (a break in the stream, no genesis
 * event, a snapshot naming a head the stream does not have): nothing was written.
 */
export class ChainBrokenError extends ArbiterError {
  /** The revision where the history stops chaining, when there is one. */
  readonly revision: number | null;

  constructor(message: string, revision: number | null, options?: ErrorOptions) {
    super(ErrorCode.ChainBroken, message, options);
    this.name = "ChainBrokenError";
    this.revision = revision;
  }
}

/** True when `err` is a {@link ChainBrokenError}. */
export function isChainBrokenError(err: unknown): err is ChainBrokenError {
  return isArbiterError(err, ErrorCode.ChainBroken);
}
