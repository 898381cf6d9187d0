import { ArbiterError, ErrorCode, toArbiterError } from "@arbiter/protocol";
import { isInvalidRulesError } from "@arbiter/rules";

/** Exit codes of the `arbiter` command, by what went wrong. */
export const ExitCode = {
  Ok: 0,
  Failed: 1,
  InvalidInput: 2,
  Conflict: 3,
  Unavailable: 4,
  /** Written, but not (yet) enforced: `--wait` gave up before every worker and override followed. */
  NotEnforced: 5,
} as const;

/** One of the {@link ExitCode} values. */
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

/** The exit code of every error code; a `Record` over `ErrorCode`, so a new code cannot be forgotten. */
export const EXIT_CODE_BY_ERROR: Readonly<Record<ErrorCode, ExitCode>> = {
  [ErrorCode.InvalidRequest]: ExitCode.InvalidInput,
  [ErrorCode.InvalidRules]: ExitCode.InvalidInput,
  [ErrorCode.RuleConflict]: ExitCode.Conflict,
  [ErrorCode.RevisionNotFound]: ExitCode.InvalidInput,
  [ErrorCode.InvalidKey]: ExitCode.InvalidInput,
  [ErrorCode.InvalidWasm]: ExitCode.InvalidInput,
  [ErrorCode.AdminKeyNotAccepted]: ExitCode.InvalidInput,
  [ErrorCode.StoreUnavailable]: ExitCode.Unavailable,
  [ErrorCode.ChainBroken]: ExitCode.Unavailable,
  [ErrorCode.WorkerNotEnrolled]: ExitCode.InvalidInput,
  [ErrorCode.InvalidConfig]: ExitCode.InvalidInput,
  [ErrorCode.NoWorkerAnswered]: ExitCode.NotEnforced,
  [ErrorCode.ChangesDisagree]: ExitCode.NotEnforced,
  [ErrorCode.WaitTimeout]: ExitCode.NotEnforced,
  [ErrorCode.WaitInterrupted]: ExitCode.NotEnforced,
  [ErrorCode.InvalidInvocation]: ExitCode.InvalidInput,
  [ErrorCode.InvalidUsage]: ExitCode.InvalidInput,
  [ErrorCode.NatsServerNotFound]: ExitCode.Unavailable,
  [ErrorCode.NatsServerStartFailed]: ExitCode.Unavailable,
  [ErrorCode.NatsClusterNotFormed]: ExitCode.Unavailable,
  [ErrorCode.Internal]: ExitCode.Failed,
};

/** Writes a command's result: JSON (one document) with `--json`, else the human text. */
export function emit(json: boolean, value: unknown, human: () => string): void {
  process.stdout.write(json ? `${JSON.stringify(value, null, 2)}\n` : `${human()}\n`);
}

/** Writes one JSON line (for streams of records such as `decisions tail --json`). */
export function emitLine(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value)}\n`);
}

/**
 * A failure after a rules change was written (`--wait` found it not enforced): `--json` reports
 * the revision and deployment written as `error.written`, so a script need not parse the message.
 */
export class WrittenNotEnforcedError extends ArbiterError {
  /** The revision written, and its deployment. */
  readonly written: { readonly revision: number; readonly deployment: string };

  constructor(code: ErrorCode, message: string, written: { revision: number; deployment: string }) {
    super(code, message);
    this.name = "WrittenNotEnforcedError";
    this.written = written;
  }
}

/**
 * Reports a failure on stderr (as `{"error":{code,message,…}}` with `--json`) and returns the
 * exit code for it. Unknown throws are normalised to INTERNAL (exit 1).
 */
export function reportError(err: unknown, json: boolean): ExitCode {
  const error = toArbiterError(err);
  const details = isInvalidRulesError(err)
    ? { issues: err.issues }
    : err instanceof WrittenNotEnforcedError
      ? { written: err.written }
      : {};
  if (json) {
    process.stderr.write(
      `${JSON.stringify({ error: { code: error.code, message: error.message, ...details } })}\n`,
    );
  } else {
    process.stderr.write(`arbiter: ${error.message}\n`);
  }
  return EXIT_CODE_BY_ERROR[error.code];
}
