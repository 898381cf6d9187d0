import { ArbiterError, ErrorCode } from "@arbiter/protocol";

/** How to get a `nats-server` binary; the tail of every {@link NatsServerNotFoundError} message. */
export const NATS_SERVER_INSTALL_HINT =
  "Install it with `apt-get install -y nats-server` (Debian/Ubuntu), or download it from " +
  "https://github.com/nats-io/nats-server/releases and set NATS_SERVER_BIN=/path/to/nats-server.";

/** No usable `nats-server` binary: none on PATH or in the usual places, or `NATS_SERVER_BIN` is not executable. */
export class NatsServerNotFoundError extends ArbiterError {
  constructor(message: string, options?: ErrorOptions) {
    super(ErrorCode.NatsServerNotFound, message, options);
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
export class NatsServerStartError extends ArbiterError {
  readonly logTail: readonly string[];

  constructor(message: string, logTail: readonly string[], options?: ErrorOptions) {
    super(
      ErrorCode.NatsServerStartFailed,
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
export class NatsClusterFormationError extends ArbiterError {
  constructor(message: string, options?: ErrorOptions) {
    super(ErrorCode.NatsClusterNotFormed, message, options);
    this.name = "NatsClusterFormationError";
  }
}

/** True when `err` is a {@link NatsClusterFormationError}. */
export function isNatsClusterFormationError(err: unknown): err is NatsClusterFormationError {
  return err instanceof NatsClusterFormationError;
}
