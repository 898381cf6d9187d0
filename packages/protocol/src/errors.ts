/**
 * Every error Arbiter raises on purpose carries one of these codes, so callers (and the CLI's
 * exit codes and `--json` output) can branch on a stable value rather than on message text.
 */
export const ErrorCode = {
  InvalidRequest: "INVALID_REQUEST",
  InvalidRules: "INVALID_RULES",
  RuleConflict: "RULE_CONFLICT",
  RevisionNotFound: "REVISION_NOT_FOUND",
  InvalidKey: "INVALID_KEY",
  /** Bytes that are not a well-formed WebAssembly module or component (truncated, over-long, bad header). */
  InvalidWasm: "INVALID_WASM",
  /** A rule change signed by a key that the configured admin keys or the running workers do not accept. */
  AdminKeyNotAccepted: "ADMIN_KEY_NOT_ACCEPTED",
  StoreUnavailable: "STORE_UNAVAILABLE",
  /** The rules history does not chain (another deployment, a wrong prev hash, a refilled stream): nothing is written on it. */
  ChainBroken: "CHAIN_BROKEN",
  /** A worker key that is not enrolled in the deployment (a worker refusing to start with it). */
  WorkerNotEnrolled: "WORKER_NOT_ENROLLED",
  InvalidConfig: "INVALID_CONFIG",
  /** `--wait`: no worker answered on the status subject, so nothing serves the revision written. */
  NoWorkerAnswered: "NO_WORKER_ANSWERED",
  /** `--wait`: the revision written was not served by every live worker, or not re-evaluated, in time. */
  WaitTimeout: "WAIT_TIMEOUT",
  /** `--wait`: stopped (Ctrl-C, SIGTERM) while waiting, after or during the write. */
  WaitInterrupted: "WAIT_INTERRUPTED",
  /** `--wait`: served and re-evaluated, but the workers publish overrides to different subjects, so some hosts may not hear theirs. */
  ChangesDisagree: "CHANGES_DISAGREE",
  /** Bytes that are not a zero-trust invocation (neither JSON nor msgpack of one). */
  InvalidInvocation: "INVALID_INVOCATION",
  /** A command line commander could not parse (unknown option, missing argument, …). */
  InvalidUsage: "INVALID_USAGE",
  NatsServerNotFound: "NATS_SERVER_NOT_FOUND",
  NatsServerStartFailed: "NATS_SERVER_START_FAILED",
  NatsClusterNotFormed: "NATS_CLUSTER_NOT_FORMED",
  Internal: "INTERNAL",
} as const;

/** One of the stable error codes in {@link ErrorCode}. */
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

/** Base class of every error Arbiter raises on purpose; `code` is stable, `message` is for people. */
export class ArbiterError extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "ArbiterError";
    this.code = code;
  }
}

/** True when `err` is an {@link ArbiterError} (optionally with the given code). */
export function isArbiterError(err: unknown, code?: ErrorCode): err is ArbiterError {
  return err instanceof ArbiterError && (code === undefined || err.code === code);
}

/**
 * Normalises anything thrown into an {@link ArbiterError}; used at boundaries (CLI, worker loop)
 * so that unknown throws never leak as bare strings or foreign error types.
 */
export function toArbiterError(err: unknown, code: ErrorCode = ErrorCode.Internal): ArbiterError {
  if (err instanceof ArbiterError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new ArbiterError(code, message, { cause: err });
}
