import type { Logger } from "pino";

/**
 * A warning about something that can happen thousands of times a second (dropped requests, an
 * outage, refused reply subjects): logged at most once per interval, each line with the true count
 * since the previous one. Counts left when the interval ends are logged then, so the last of a
 * burst is never lost.
 */
export class RateLimitedWarning {
  readonly #log: Logger;
  readonly #message: string;
  readonly #countField: string;
  readonly #intervalMs: number;
  readonly #fields: () => Record<string, unknown>;
  #pending = 0;
  #lastAt = Number.NEGATIVE_INFINITY;
  #timer: NodeJS.Timeout | undefined;

  /** Each line carries the count as `countField`; `fields` adds context (read when the line is written). */
  constructor(
    log: Logger,
    message: string,
    countField: string,
    fields: () => Record<string, unknown> = () => ({}),
    intervalMs = 1000,
  ) {
    this.#log = log;
    this.#message = message;
    this.#countField = countField;
    this.#fields = fields;
    this.#intervalMs = intervalMs;
  }

  /** Counts `n` more occurrences; logs now or at the end of the interval. */
  count(n = 1, detail?: Record<string, unknown>): void {
    this.#pending += n;
    if (this.#timer !== undefined) return;
    const wait = this.#lastAt + this.#intervalMs - Date.now();
    if (wait <= 0) this.#write(detail);
    else this.#timer = setTimeout(() => this.#write(detail), wait);
  }

  /** Logs what is still counted, at once, and stops the timer (for `stop()`). */
  flush(): void {
    this.#write();
  }

  #write(detail?: Record<string, unknown>): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#pending === 0) return;
    this.#log.warn({ ...detail, ...this.#fields(), [this.#countField]: this.#pending }, this.#message);
    this.#pending = 0;
    this.#lastAt = Date.now();
  }
}
