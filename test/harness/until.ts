import { setTimeout as delay } from "node:timers/promises";

/** How {@link until} polls. */
export interface UntilOptions {
  /** What is awaited, for the timeout message. */
  name: string;
  /** Deadline in milliseconds; default 10 000. */
  timeout?: number;
  /** Pause between calls in milliseconds; default 25. */
  interval?: number;
}

/** Thrown by {@link until} at its deadline; the message names what was awaited and the last failure. */
export class UntilTimeoutError extends Error {
  readonly code = "UNTIL_TIMEOUT" as const;

  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "UntilTimeoutError";
  }
}

/** `T` without the falsy values {@link until} keeps polling on, so `cond && value` polls to `value`'s type. */
export type Truthy<T> = Exclude<T, false | 0 | 0n | "" | null | undefined>;

const CALL_TIMED_OUT = Symbol("call timed out");

/**
 * Calls `fn` every `interval` ms until it returns (or resolves to) a truthy value without throwing,
 * and resolves with that value. For assertion-style checks return `true` after the assertions.
 * Rejects with {@link UntilTimeoutError} ("timed out after Nms waiting for <name>: <last error>")
 * at the deadline, also when a single call is still pending then.
 */
export async function until<T>(fn: () => T | Promise<T>, options: UntilOptions): Promise<Truthy<T>> {
  const timeout = options.timeout ?? 10_000;
  const interval = options.interval ?? 25;
  const deadline = Date.now() + timeout;
  let last = "it was never called";
  for (;;) {
    const outcome = await callBefore(fn, deadline);
    if (outcome.ok && outcome.value) return outcome.value as Truthy<T>;
    if (outcome.ok) last = `last value was ${String(outcome.value)}`;
    else if (outcome.error === CALL_TIMED_OUT) last = "the last call was still pending at the deadline";
    else last = outcome.error instanceof Error ? outcome.error.message : String(outcome.error);
    const remaining = deadline - Date.now();
    if (remaining <= 0) {
      throw new UntilTimeoutError(`timed out after ${timeout}ms waiting for ${options.name}: ${last}`, {
        cause: outcome.ok ? undefined : outcome.error,
      });
    }
    await delay(Math.min(interval, remaining));
  }
}

type Outcome<T> = { ok: true; value: T } | { ok: false; error: unknown };

/** One call of `fn`, abandoned (not cancelled) if it is still pending at the deadline. */
async function callBefore<T>(fn: () => T | Promise<T>, deadline: number): Promise<Outcome<T>> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(CALL_TIMED_OUT), Math.max(0, deadline - Date.now()));
  });
  try {
    const value = await Promise.race([Promise.resolve().then(fn), expired]);
    return { ok: true, value };
  } catch (error) {
    return { ok: false, error };
  } finally {
    clearTimeout(timer);
  }
}
