import { setTimeout as delay } from "node:timers/promises";

/**
 * What JetStream answers a create with while a cluster is still placing its peers (just formed, a
 * node rejoining): the same create succeeds moments later.
 */
const STILL_PLACING =
  /no suitable peers|peer offline|no meta leader|jetstream cluster not ready|temporarily unavailable/i;

/** Options of {@link whilePlacing}. */
export interface PlacementRetryOptions {
  /** Longest time to keep trying (15 s unless told). */
  readonly waitMs?: number;
  /** How to pause between attempts (a real timer unless told: tests pass one that returns at once). */
  readonly pause?: (ms: number) => Promise<unknown>;
}

/**
 * Runs `create`, and again while it fails with an answer that the cluster is still placing its
 * peers, pausing 250 ms doubling up to 2 s, for up to `waitMs`. Any other failure, or the last one
 * past the wait, is thrown as it came.
 */
export async function whilePlacing<T>(
  create: () => Promise<T>,
  options: PlacementRetryOptions = {},
): Promise<T> {
  const deadline = Date.now() + (options.waitMs ?? 15_000);
  const pause = options.pause ?? delay;
  for (let wait = 250; ; wait = Math.min(wait * 2, 2000)) {
    try {
      return await create();
    } catch (err) {
      if (!(err instanceof Error) || !STILL_PLACING.test(err.message) || Date.now() + wait > deadline)
        throw err;
      await pause(wait);
    }
  }
}
