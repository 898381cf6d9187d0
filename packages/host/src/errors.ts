import { ArbiterError, ErrorCode } from "@arbiter/protocol";

/** The options given to `createHostPolicyClient` are invalid; the message lists what is wrong. */
export class HostConfigError extends ArbiterError {
  constructor(message: string, options?: ErrorOptions) {
    super(ErrorCode.InvalidConfig, message, options);
    this.name = "HostConfigError";
  }
}

/** True when `err` is a {@link HostConfigError}. */
export function isHostConfigError(err: unknown): err is HostConfigError {
  return err instanceof HostConfigError;
}

/**
 * A request body given to an `evaluate*` method cannot be what a real host sends (a negative
 * `maxInstances`, a non-string annotation…); nothing was sent.
 */
export class HostRequestError extends ArbiterError {
  constructor(message: string, options?: ErrorOptions) {
    super(ErrorCode.InvalidRequest, message, options);
    this.name = "HostRequestError";
  }
}

/** True when `err` is a {@link HostRequestError}. */
export function isHostRequestError(err: unknown): err is HostRequestError {
  return err instanceof HostRequestError;
}

/**
 * An `evaluate*` method or `start()` was called after `stop()`. `@arbiter/protocol` has no
 * state-misuse code yet, so this carries `INTERNAL`; branch on the class, not the code.
 */
export class HostClientStoppedError extends ArbiterError {
  constructor(message = "the host policy client is stopped", options?: ErrorOptions) {
    super(ErrorCode.Internal, message, options);
    this.name = "HostClientStoppedError";
  }
}

/** True when `err` is a {@link HostClientStoppedError}. */
export function isHostClientStoppedError(err: unknown): err is HostClientStoppedError {
  return err instanceof HostClientStoppedError;
}
