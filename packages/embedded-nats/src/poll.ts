import { setTimeout as delay } from "node:timers/promises";

/** How {@link pollUntil} polls and how it gives up. */
export interface PollOptions {
  /** What is awaited, for the timeout message ("nats-server n1 to accept connections"). */
  name: string;
  /** Deadline in milliseconds. */
  timeout: number;
  /** Pause between attempts in milliseconds; default 25. */
  interval?: number;
  /** Checked before every attempt; an error it returns is thrown at once (e.g. the process died). */
  fail?: () => Error | undefined;
  /** Builds the error thrown at the deadline from the standard message and the last failure. */
  onTimeout?: (message: string, lastError: unknown) => Error;
}

/**
 * Calls `check` until it returns something other than `undefined`; a throw counts as "not yet".
 * Rejects with `options.fail()` as soon as that returns an error, or with a timeout error naming
 * `options.name` and the last failure. `check` must bound its own duration (probes use short timeouts).
 */
export async function pollUntil<T>(check: () => Promise<T | undefined>, options: PollOptions): Promise<T> {
  const deadline = Date.now() + options.timeout;
  const interval = options.interval ?? 25;
  let lastError: unknown;
  for (;;) {
    const fatal = options.fail?.();
    if (fatal) throw fatal;
    try {
      const value = await check();
      if (value !== undefined) return value;
      lastError = undefined;
    } catch (err) {
      lastError = err;
    }
    const fatalAfter = options.fail?.();
    if (fatalAfter) throw fatalAfter;
    if (Date.now() >= deadline) {
      const reason =
        lastError instanceof Error ? lastError.message : lastError === undefined ? "" : String(lastError);
      const message = `timed out after ${options.timeout}ms waiting for ${options.name}${reason ? `: ${reason}` : ""}`;
      throw options.onTimeout
        ? options.onTimeout(message, lastError)
        : new Error(message, { cause: lastError });
    }
    await delay(Math.min(interval, Math.max(0, deadline - Date.now())));
  }
}
