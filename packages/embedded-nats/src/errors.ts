/**
 * Stable codes of the errors this package raises. `NATS_SERVER_NOT_FOUND` matches the code of the
 * same name in `@arbiter/protocol`, which this package cannot depend on.
 */
export const EmbeddedNatsErrorCode = {
  NatsServerNotFound: "NATS_SERVER_NOT_FOUND",
  NatsServerStartFailed: "NATS_SERVER_START_FAILED",
  NatsClusterNotFormed: "NATS_CLUSTER_NOT_FORMED",
} as const;

/** One of the stable error codes in {@link EmbeddedNatsErrorCode}. */
export type EmbeddedNatsErrorCode = (typeof EmbeddedNatsErrorCode)[keyof typeof EmbeddedNatsErrorCode];

/** How to get a `nats-server` binary; the tail of every {@link NatsServerNotFoundError} message. */
export const NATS_SERVER_INSTALL_HINT =
  "Install it with `apt-get install -y nats-server` (Debian/Ubuntu), or download it from " +
  "https://github.com/nats-io/nats-server/releases and set NATS_SERVER_BIN=/path/to/nats-server.";

/** No usable `nats-server` binary: none on PATH or in the usual places, or `NATS_SERVER_BIN` is not executable. */
export class NatsServerNotFoundError extends Error {
  readonly code = EmbeddedNatsErrorCode.NatsServerNotFound;

  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "NatsServerNotFoundError";
  }
}

/** True when `err` is a {@link NatsServerNotFoundError}. */
export function isNatsServerNotFoundError(err: unknown): err is NatsServerNotFoundError {
  return err instanceof NatsServerNotFoundError;
}

/**
 * A `nats-server` child process exited before it became ready, could not be spawned, or missed its
 * start deadline. `logTail` holds the last lines the server wrote, which usually say why.
 */
export class NatsServerStartError extends Error {
  readonly code = EmbeddedNatsErrorCode.NatsServerStartFailed;
  readonly logTail: readonly string[];

  constructor(message: string, logTail: readonly string[], options?: ErrorOptions) {
    super(
      logTail.length > 0
        ? `${message}\n--- last lines of nats-server log ---\n${logTail.join("\n")}`
        : message,
      options,
    );
    this.name = "NatsServerStartError";
    this.logTail = logTail;
  }
}

/** True when `err` is a {@link NatsServerStartError}. */
export function isNatsServerStartError(err: unknown): err is NatsServerStartError {
  return err instanceof NatsServerStartError;
}

/** The nodes of a cluster did not agree on one JetStream meta leader with every peer current in time. */
export class NatsClusterFormationError extends Error {
  readonly code = EmbeddedNatsErrorCode.NatsClusterNotFormed;

  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "NatsClusterFormationError";
  }
}

/** True when `err` is a {@link NatsClusterFormationError}. */
export function isNatsClusterFormationError(err: unknown): err is NatsClusterFormationError {
  return err instanceof NatsClusterFormationError;
}
