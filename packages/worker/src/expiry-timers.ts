import type { ActiveDecisionV1, ResourceNames } from "@arbiter/protocol";
import type { RulesetState } from "@arbiter/rules";
import {
  type ActiveIndex,
  type ArmOutcome,
  activeEntryKey,
  type DurableFeed,
  expiryTimerArmer,
  type FeedMessage,
  openDurableFeed,
  parseExpiryTimer,
} from "@arbiter/store";
import type { NatsConnection } from "@nats-io/nats-core";
import type { Logger } from "pino";
import { type Reevaluation, reevaluate } from "./active-projection.js";
import { RateLimitedWarning } from "./rate-limited-warning.js";

/** The longest a timer is held before it is looked at again, however far its expiry is. */
export const EXPIRY_RECHECK_MS = 3_600_000;

/**
 * Expiries this close (seconds) get a timer at their own second; farther ones share a coarser one
 * (see {@link expiryTimerAt}).
 */
export const EXACT_EXPIRY_WINDOW_S = 3600;

/** The coarsest grid of timers: past it (2^52 s) no distance doubles within safe integers. */
const MAX_GRID_S = 2 ** 52;

/**
 * The second whose timer stands for claims expiring at `expiresAt` (unix seconds), armed at
 * `nowS`: the expiry itself within {@link EXACT_EXPIRY_WINDOW_S}; farther, at distance d in
 * (G, 2G] for G = 3600·2^k, the expiry rounded down to a multiple of G, a time to look again
 * before it (when that timer fires, the entries it stands for get the next, finer one). So
 * however many distinct expiries hosts' claims name, at most 3600 exact timers and two for each
 * doubling of the distance are pending at once. Pure.
 */
export function expiryTimerAt(expiresAt: number, nowS: number): number {
  const distance = expiresAt - nowS;
  if (distance <= EXACT_EXPIRY_WINDOW_S) return expiresAt;
  let grid = EXACT_EXPIRY_WINDOW_S;
  while (distance > 2 * grid && grid < MAX_GRID_S) grid *= 2;
  return Math.floor(expiresAt / grid) * grid;
}

/** How far apart two workers' clocks may be (seconds) and still agree on which timers are armed. */
const CLOCK_SLACK_S = 300;

/**
 * Whether a timer for second `timer`, seen at `nowS`, is one a worker could have armed: within the
 * hour (and the clocks' slack), or on the grid {@link expiryTimerAt} uses at that distance (or
 * the next finer one, for a worker whose clock differs). Any other is a forgery, which would only
 * be held, hour after hour, taking one of the shared consumer's pending timers. Pure.
 */
export function couldBeArmed(timer: number, nowS: number): boolean {
  const distance = timer - nowS;
  if (distance <= EXACT_EXPIRY_WINDOW_S + CLOCK_SLACK_S) return true;
  let grid = EXACT_EXPIRY_WINDOW_S;
  while (distance + CLOCK_SLACK_S > 2 * grid && grid < MAX_GRID_S) grid *= 2;
  return timer % Math.max(EXACT_EXPIRY_WINDOW_S, grid / 2) === 0;
}

/**
 * Whether the timer of second `timer` may have been the coarse one standing for `expiresAt`, so
 * that, fired, the entry needs its next timer: `timer` on an hour grid (its largest grid G), the
 * expiry after it and within G. Pure.
 */
export function expiryStandsIn(timer: number, expiresAt: number): boolean {
  if (timer % EXACT_EXPIRY_WINDOW_S !== 0 || expiresAt <= timer) return false;
  let grid = EXACT_EXPIRY_WINDOW_S;
  while (timer % (2 * grid) === 0 && grid < MAX_GRID_S) grid *= 2;
  return expiresAt < timer + grid;
}

/** How many changed entries are recorded and published together. */
const CHUNK = 64;

/**
 * How long a timer for `expiresAt` (unix seconds) still waits at `nowMs`: null when it is due
 * (`nowMs` has reached it), otherwise the time left, at most `capMs`. Pure.
 */
export function expiryWaitMs(expiresAt: number, nowMs: number, capMs = EXPIRY_RECHECK_MS): number | null {
  const left = expiresAt * 1000 - nowMs;
  return left <= 0 ? null : Math.min(left, capMs);
}

/**
 * Whether a cached decision is one an expiry re-evaluates at `now`: permitted, decided by the
 * rules (not refused at the edge), with claims whose `expiresAt` `now` has reached. Pure.
 */
export function isExpiredPermit(entry: ActiveDecisionV1, now: Date): boolean {
  return (
    entry.permitted &&
    entry.rejection === null &&
    entry.expiresAt !== null &&
    expiryWaitMs(entry.expiresAt, now.getTime()) === null
  );
}

/**
 * What the projection does about an entry it has just put, at `now`: `arm` its expiry's timer (a
 * permitted entry whose claims expire later), re-evaluate it at once when that expiry has passed
 * already (`due`: its timer may have fired before the entry was there), or nothing. Pure.
 */
export function expiryStep(entry: ActiveDecisionV1, now: Date): "none" | "arm" | "due" {
  if (!entry.permitted || entry.rejection !== null || entry.expiresAt === null) return "none";
  if (!Number.isSafeInteger(entry.expiresAt)) return "none";
  return isExpiredPermit(entry, now) ? "due" : "arm";
}

/**
 * The message id of the revocation record an expiry causes: the entry's decision and key, so a
 * timer handled again records it once, and it never collides with the record a rules revision
 * made for the same entry at the same revision.
 */
export function expiryRecordId(revision: number, entry: ActiveDecisionV1): string {
  return `${revision}:${activeEntryKey(entry)}:expired:${entry.decisionId}`;
}

/** What the expiry timers need from the revocation fan-out they belong to. */
export interface ExpiryTimerDeps {
  readonly nc: NatsConnection;
  readonly names: ResourceNames;
  /** The active index, once the fan-out has it open (throws before). */
  index(): ActiveIndex;
  /**
   * Hands `read` the index's entries, in runs, for a timer that fired: from the worker's mirror of
   * the index when it holds the index whole, else read from the server. Without it, always the
   * server.
   */
  readonly readEntries?: (
    read: (runs: AsyncIterable<readonly ActiveDecisionV1[]>) => Promise<void>,
  ) => Promise<void>;
  /** The worker's rules as they are now. */
  readonly rules: { readonly ruleset: RulesetState };
  /** The fan-out's one path for changed entries: records, overrides, index updates. */
  revoke(
    changed: readonly Reevaluation[],
    revision: number,
    recordId: (c: Reevaluation) => string,
  ): Promise<void>;
  readonly clock: () => Date;
  readonly log: Logger;
}

/** Counters of {@link ExpiryTimers}. */
export interface ExpiryTimerStats {
  /** Timers this worker stored (a timer already pending is not stored again). */
  readonly armed: number;
  /** Timers not stored because the expiries stream is missing. */
  readonly unarmed: number;
  /** Timers that came due here and were handled (the index scanned for expired permits). */
  readonly fired: number;
  /** Overrides sent because claims expired. */
  readonly overrides: number;
  /** Messages of the expiries stream that are not timers, dropped. */
  readonly refused: number;
}

/**
 * Claims that expire revoke themselves: each distinct expiry of a permitted cached decision is a
 * timer on the NATS server (a message of the expiries stream), held by one worker at a time
 * through the shared consumer and NAKed with a delay until it is due, so a worker that dies holding
 * it hands it on. When due, every permitted entry whose claims have expired is evaluated again at
 * that moment, and each one whose outcome changes is revoked through the fan-out's revoke path.
 */
export class ExpiryTimers {
  readonly #deps: ExpiryTimerDeps;
  readonly #arm: (expiresAt: number) => Promise<ArmOutcome>;
  readonly #unarmed: RateLimitedWarning;
  #feed: DurableFeed | undefined;
  #supervisor: Promise<void> = Promise.resolve();
  #stopped = false;
  /** Interrupts the supervisor's wait (set while it waits). */
  #wake: () => void = () => {};
  #stats = { armed: 0, unarmed: 0, fired: 0, overrides: 0, refused: 0 };

  constructor(deps: ExpiryTimerDeps) {
    this.#deps = deps;
    this.#arm = expiryTimerArmer(deps.nc, deps.names);
    this.#unarmed = new RateLimitedWarning(
      deps.log,
      `no ${deps.names.expiriesStream} stream: expiring claims are not re-evaluated when they expire until an admin's store (\`arbiter rules apply\`) makes it`,
      "unarmed",
    );
  }

  /** A snapshot of the counters. */
  get stats(): ExpiryTimerStats {
    return { ...this.#stats };
  }

  /**
   * Binds to the shared consumer in the background; while it cannot (missing, JetStream away) it
   * logs and tries again, every 250 ms doubling up to 5 s, and a feed that ends is opened again.
   * Never throws.
   */
  start(): void {
    this.#stopped = false;
    this.#supervisor = this.#supervise();
  }

  /**
   * Stops taking timers; one being handled gives up (and goes to another worker) or finishes.
   * `start()` takes them again.
   */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#wake();
    await this.#supervisor;
    await this.#feed?.stop();
    this.#feed = undefined;
    this.#unarmed.flush();
  }

  async #supervise(): Promise<void> {
    const { nc, names, log } = this.#deps;
    let pause = 250;
    while (!this.#stopped) {
      try {
        this.#feed ??= await openDurableFeed(
          nc,
          { stream: names.expiriesStream, consumer: names.expiriesConsumer },
          (m) => this.#handle(m),
        );
        pause = 250;
        if (this.#stopped) return;
        const feed = this.#feed;
        const ended = await Promise.race([
          feed.ended,
          new Promise<"woken">((resolve) => {
            this.#wake = () => resolve("woken");
          }),
        ]);
        if (ended === "woken" || this.#stopped) return;
        log.warn({ err: ended }, "the expiry timers' feed ended; opening it again");
        this.#feed = undefined;
      } catch (err) {
        if (this.#stopped) return;
        log.warn({ err, retryInMs: pause }, "the expiry timers cannot open their feed yet; trying again");
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, pause);
          this.#wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        pause = Math.min(pause * 2, 5000);
      }
    }
  }

  /**
   * Arms the timer that stands for `expiresAt` now ({@link expiryTimerAt}; nothing when it is
   * pending already). Without the expiries stream it counts and warns instead, so that the index
   * does not stop for it. Throws StoreUnavailableError.
   */
  async arm(expiresAt: number): Promise<void> {
    const nowS = Math.floor(this.#deps.clock().getTime() / 1000);
    const outcome = await this.#arm(expiryTimerAt(expiresAt, nowS));
    if (outcome === "armed") this.#stats.armed++;
    if (outcome === "missing") {
      this.#stats.unarmed++;
      this.#unarmed.count();
    }
  }

  async #handle(m: FeedMessage): Promise<void> {
    const { log } = this.#deps;
    const timer = parseExpiryTimer(this.#deps.names, m.subject, m.data);
    if (timer === null) {
      this.#stats.refused++;
      log.warn({ seq: m.seq }, "a message of the expiries stream is not an expiry timer; dropped");
      return;
    }
    const nowMs = this.#deps.clock().getTime();
    if (!couldBeArmed(timer.expiresAt, Math.floor(nowMs / 1000))) {
      // One stored by an earlier release stood for real permits: the grid timer standing for its
      // second takes its place (one per grid second, however many such timers there are).
      await this.arm(timer.expiresAt);
      this.#stats.refused++;
      log.warn(
        { seq: m.seq, expiresAt: timer.expiresAt },
        "an expiry timer off the grid of timers for its distance; replaced by the grid's",
      );
      return;
    }
    const wait = expiryWaitMs(timer.expiresAt, nowMs);
    if (wait !== null) {
      log.debug(
        { expiresAt: timer.expiresAt, waitMs: wait, delivery: m.deliveries },
        "holding an expiry timer until it is due",
      );
      m.later(wait);
      return;
    }
    log.info({ expiresAt: timer.expiresAt, delivery: m.deliveries }, "an expiry timer is due");
    await this.revokeExpired(timer.expiresAt);
    this.#stats.fired++;
  }

  /**
   * Evaluates every permitted entry whose claims have expired again, now, under the rules this
   * worker serves, and revokes those whose outcome changes. Whatever a timer says, only entries
   * that really expired by this worker's clock are looked at. Given the `timer` that fired, the
   * permits it stood for that expire later get their next, finer timer.
   */
  async revokeExpired(timer?: number): Promise<void> {
    const { rules, log } = this.#deps;
    const ruleset = rules.ruleset;
    const now = this.#deps.clock();
    const revision = ruleset.revision;
    let changed: Reevaluation[] = [];
    let total = 0;
    const flush = async () => {
      await this.#deps.revoke(changed, revision, (c) => expiryRecordId(revision, c.entry));
      this.#stats.overrides += changed.length;
      total += changed.length;
      changed = [];
    };
    const rearmed = new Set<number>();
    const look = async (entry: ActiveDecisionV1) => {
      if (this.#feed?.stopping) throw new Error("the worker is stopping");
      const { expiresAt } = entry;
      if (
        timer !== undefined &&
        expiresAt !== null &&
        expiryStep(entry, now) === "arm" &&
        expiryStandsIn(timer, expiresAt)
      ) {
        const next = expiryTimerAt(expiresAt, Math.floor(now.getTime() / 1000));
        if (!rearmed.has(next)) {
          rearmed.add(next);
          await this.arm(expiresAt);
        }
      }
      if (!isExpiredPermit(entry, now)) return;
      const again = reevaluate(entry, ruleset, now);
      if (!again?.changed) return;
      changed.push(again);
      if (changed.length === CHUNK) await flush();
    };
    const readEntries = this.#deps.readEntries ?? ((read) => read(runsOfOne(this.#deps.index().entries())));
    await readEntries(async (runs) => {
      for await (const run of runs) for (const entry of run) await look(entry);
    });
    if (changed.length > 0) await flush();
    if (total > 0) log.info({ revision, overrides: total }, "cached decisions whose claims expired revoked");
  }
}

/** Entries read one at a time (from the server), as runs of one. */
export async function* runsOfOne(
  entries: AsyncIterable<ActiveDecisionV1>,
): AsyncIterable<readonly ActiveDecisionV1[]> {
  for await (const entry of entries) yield [entry];
}
