import { ErrorCode, isArbiterError, toArbiterError } from "@arbiter/protocol";
import { isInvalidRulesError } from "@arbiter/rules";

/** Exit codes of the `arbiter` command, by what went wrong. */
export const ExitCode = {
  Ok: 0,
  Failed: 1,
  InvalidInput: 2,
  Conflict: 3,
  Unavailable: 4,
} as const;

/** Writes a command's result: JSON (one document) with `--json`, else the human text. */
export function emit(json: boolean, value: unknown, human: () => string): void {
  process.stdout.write(json ? `${JSON.stringify(value, null, 2)}\n` : `${human()}\n`);
}

/** Writes one JSON line (for streams of records such as `decisions tail --json`). */
export function emitLine(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value)}\n`);
}

/**
 * Reports a failure on stderr (as `{"error":{code,message,…}}` with `--json`) and returns the
 * exit code for it. Unknown throws are normalised to INTERNAL.
 */
export function reportError(err: unknown, json: boolean): number {
  const error = toArbiterError(err);
  const details = isInvalidRulesError(err) ? { issues: err.issues } : {};
  if (json) {
    process.stderr.write(
      `${JSON.stringify({ error: { code: error.code, message: error.message, ...details } })}\n`,
    );
  } else {
    process.stderr.write(`arbiter: ${error.message}\n`);
  }
  return exitCodeFor(err);
}

function exitCodeFor(err: unknown): number {
  if (!isArbiterError(err)) return ExitCode.Failed;
  switch (err.code) {
    case ErrorCode.RuleConflict:
      return ExitCode.Conflict;
    case ErrorCode.StoreUnavailable:
    case ErrorCode.NatsServerNotFound:
      return ExitCode.Unavailable;
    case ErrorCode.InvalidRules:
    case ErrorCode.InvalidConfig:
    case ErrorCode.InvalidKey:
    case ErrorCode.InvalidRequest:
    case ErrorCode.RevisionNotFound:
      return ExitCode.InvalidInput;
    default:
      return ExitCode.Failed;
  }
}
