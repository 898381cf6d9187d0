import { ArbiterError, ErrorCode } from "@arbiter/protocol";
import {
  evolveRuleset,
  initialRulesetState,
  type RulesetState,
  type RulesetTrust,
  restoreSnapshot,
  ruleEventHash,
  snapshotHeadMatches,
} from "@arbiter/rules";
import type { ArbiterStore, Follower, StoredRuleEvent } from "@arbiter/store";
import type { Logger } from "pino";

/** Longest pause between attempts to follow the rules again. */
const MAX_RETRY_MS = 5000;

/** What {@link RulesFollower} needs. */
export interface RulesFollowerDeps {
  readonly store: ArbiterStore;
  readonly trust: RulesetTrust;
  readonly log: Logger;
  /** First pause before following again after the feed broke; doubles up to 5 s. */
  readonly retryMs: number;
  /** How often to check that the event at the current revision is still the one folded (a refilled stream). */
  readonly chainCheckMs: number;
  /** Called whenever {@link RulesFollower.problem} changes, and after each rule event. */
  readonly onChange: () => void;
}

/**
 * Keeps a worker's rules current: restores the snapshot, follows the rule events and folds them.
 * When the feed ends on its own it reports a problem, follows again from its revision (with
 * backoff) and clears the problem once it has caught up with the stream. A history that stops
 * chaining (another deployment, a wrong prev, a stream deleted and refilled) stops it for good:
 * it keeps its last good rules and reports the break until it is restarted.
 */
export class RulesFollower {
  readonly #deps: RulesFollowerDeps;
  readonly #waiters = new Set<() => void>();
  #ruleset: RulesetState = initialRulesetState();
  #follower: Follower | undefined;
  #problem: string | null = null;
  #stopped = false;
  #retry: NodeJS.Timeout | undefined;
  #chainCheck: NodeJS.Timeout | undefined;
  /** Why the snapshot was refused at start, until an event is applied after catching up (with its new snapshot). */
  #snapshotProblem: string | null = null;
  /** Set once `start()` has caught up (or given up waiting). */
  #live = false;
  /** The revision to reach before the follower counts as caught up, or null once there. */
  #target: number | null = null;
  applied = 0;
  rejected = 0;
  restarts = 0;
  /** Snapshots refused because their head is not in the stream (or of another deployment). */
  snapshotsRefused = 0;
  /** Breaks of the chain seen (0 or 1: the follower stops at the first). */
  chainBreaks = 0;

  constructor(deps: RulesFollowerDeps) {
    this.#deps = deps;
  }

  /** The folded rules decisions are made under now. */
  get ruleset(): RulesetState {
    return this.#ruleset;
  }

  /** Why the rules may be stale (behind the stream, the feed or the chain broken, a snapshot refused); null when current. */
  get problem(): string | null {
    const broken = this.#ruleset.broken;
    const parts = [
      broken === null
        ? this.#problem
        : `the rules history stops chaining at revision ${broken.revision} (${broken.reason}); keeping the rules of revision ${this.#ruleset.revision}`,
      this.#snapshotProblem,
    ].filter((p): p is string => p !== null);
    return parts.length === 0 ? null : parts.join("; ");
  }

  /**
   * Restores the snapshot, starts following, and waits up to `catchUpTimeoutMs` to catch up.
   * Resolves either way (a problem is reported when it did not catch up); rejects with
   * `StoreUnavailableError` when the store cannot be read at all.
   */
  async start(catchUpTimeoutMs: number): Promise<void> {
    const { store, log } = this.#deps;
    const snapshot = await store.snapshots.load();
    if (snapshot !== null) await this.#restore(snapshot);
    await this.#follow();
    this.#chainCheck = setInterval(() => void this.#checkChain(), this.#deps.chainCheckMs);
    this.#chainCheck.unref();
    try {
      await this.waitForRevision(this.#target ?? 0, catchUpTimeoutMs);
    } catch {
      log.error(
        { target: this.#target, revision: this.#ruleset.revision },
        "did not catch up with the rule events in time; serving degraded",
      );
    }
    this.#live = true;
  }

  /**
   * Starts from the snapshot when it summarizes this stream. One of another deployment than the
   * stream's genesis (or the pinned one) is refused and the whole history folded instead. One of
   * this deployment whose head the stream does not hold means the stream was deleted and
   * refilled (or lost events): its rules are the last good ones, so they are kept, and the
   * history counts as broken there.
   */
  async #restore(snapshot: string): Promise<void> {
    const { store, trust, log } = this.#deps;
    const restored = restoreSnapshot(snapshot, trust);
    if (!restored.ok) {
      if (restored.foreign) this.#refuseSnapshot(restored.reason);
      else log.warn({ reason: restored.reason }, "ignoring the rules snapshot; reading the whole history");
      return;
    }
    const { state } = restored;
    const first = await store.rules.get(1);
    const streamDeployment =
      first === null ? null : evolveRuleset(initialRulesetState(), first, trust).state.deployment;
    if (
      trust.deployment === undefined &&
      streamDeployment !== null &&
      streamDeployment !== state.deployment
    ) {
      this.#refuseSnapshot(
        `the snapshot belongs to deployment ${state.deployment}, and the rules stream to ${streamDeployment}`,
      );
      return;
    }
    const headProblem = snapshotHeadMatches(state, await store.rules.get(state.revision));
    if (headProblem === null) {
      this.#ruleset = state;
      return;
    }
    const reason = `${headProblem}: the rules stream was deleted and refilled, or lost events`;
    this.#ruleset = { ...state, broken: { revision: state.revision, reason } };
    this.#onBreak(reason, state.revision);
  }

  #refuseSnapshot(reason: string): void {
    this.snapshotsRefused++;
    this.#snapshotProblem = `the rules snapshot was refused: ${reason}`;
    this.#deps.log.error({ reason }, "refusing the rules snapshot; reading the whole history");
  }

  /** Stops following; the current rules stay readable. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#retry);
    clearInterval(this.#chainCheck);
    const follower = this.#follower;
    this.#follower = undefined;
    await follower?.stop();
  }

  /**
   * Resolves once rule events up to `revision` are folded, or at once when the history is broken
   * (it will not advance: see `ruleset.broken`); rejects with STORE_UNAVAILABLE at `timeoutMs`.
   */
  waitForRevision(revision: number, timeoutMs = 30_000): Promise<void> {
    if (this.#ruleset.revision >= revision || this.#ruleset.broken !== null) return Promise.resolve();
    return new Promise((resolve, reject) => {
      // A broken history never advances: waiting longer would not help.
      const check = () => {
        if (this.#ruleset.revision < revision && this.#ruleset.broken === null) return;
        clearTimeout(timer);
        this.#waiters.delete(check);
        resolve();
      };
      const timer = setTimeout(() => {
        this.#waiters.delete(check);
        reject(
          new ArbiterError(
            ErrorCode.StoreUnavailable,
            `rules revision ${revision} not reached within ${timeoutMs} ms (at ${this.#ruleset.revision})`,
          ),
        );
      }, timeoutMs);
      this.#waiters.add(check);
    });
  }

  /**
   * Checks that the stream still holds, at the current revision, the very event folded there: a
   * stream deleted and refilled (with older events, or another history) no longer does, and the
   * tail may not even notice the stream was replaced. Read errors are left to the feed.
   */
  async #checkChain(): Promise<void> {
    const { store } = this.#deps;
    const state = this.#ruleset;
    if (this.#stopped || state.broken !== null || state.revision === 0 || state.head === null) return;
    let stored: Awaited<ReturnType<typeof store.rules.get>>;
    try {
      stored = await store.rules.get(state.revision);
    } catch {
      return;
    }
    if (this.#ruleset !== state) return;
    const reason =
      stored === null
        ? `the rules stream no longer has revision ${state.revision}, which this worker applied (deleted and refilled?)`
        : ruleEventHash(stored.text) !== state.head
          ? `the event at revision ${state.revision} is not the one this worker applied (the stream was deleted and refilled?)`
          : null;
    if (reason === null) return;
    this.#ruleset = { ...state, broken: { revision: state.revision, reason } };
    this.#onBreak(reason, state.revision);
  }

  #onBreak(reason: string, revision: number): void {
    this.chainBreaks++;
    this.#target = null;
    this.#deps.log.error(
      { revision, reason, keeping: this.#ruleset.revision },
      "the rules history does not chain; keeping the last good rules and applying nothing more",
    );
    this.#deps.onChange();
    for (const wake of this.#waiters) wake();
  }

  /** Follows from the current revision on, and watches for the feed's end. */
  async #follow(): Promise<void> {
    const { store } = this.#deps;
    await this.#checkChain();
    const target = await store.rules.lastRevision();
    if (target > this.#ruleset.revision) {
      this.#target = target;
      this.#setProblem(
        `catching up with the rule events (at revision ${this.#ruleset.revision} of ${target})`,
      );
    } else {
      this.#target = null;
      this.#setProblem(null);
    }
    const follower = await store.rules.follow(this.#ruleset.revision + 1, (event) => this.#onEvent(event));
    if (this.#stopped) {
      await follower.stop();
      return;
    }
    this.#follower = follower;
    void follower.ended.then((err) => {
      if (err === null || this.#stopped || this.#follower !== follower) return;
      this.#follower = undefined;
      this.#deps.log.error(
        { err, revision: this.#ruleset.revision },
        "the rule event feed ended; following again",
      );
      this.#setProblem(
        `the rule event feed ended (${err.message}); following again from revision ${this.#ruleset.revision}`,
      );
      this.#scheduleRetry(this.#deps.retryMs);
    });
  }

  #scheduleRetry(waitMs: number): void {
    if (this.#stopped) return;
    this.#retry = setTimeout(() => {
      this.restarts++;
      this.#follow().catch((err: unknown) => {
        const message = err instanceof Error ? err.message : String(err);
        this.#deps.log.warn({ err, retryInMs: waitMs * 2 }, "cannot follow the rule events yet");
        this.#setProblem(
          `cannot follow the rule events (${message}); retrying from revision ${this.#ruleset.revision}`,
        );
        this.#scheduleRetry(Math.min(waitMs * 2, MAX_RETRY_MS));
      });
    }, waitMs);
  }

  #onEvent(event: StoredRuleEvent): void {
    const { trust, log } = this.#deps;
    if (event.revision <= this.#ruleset.revision) return;
    if (this.#ruleset.broken !== null) return;
    const { state, outcome } = evolveRuleset(this.#ruleset, event, trust);
    this.#ruleset = state;
    if (outcome.applied) {
      this.applied++;
      if (this.#live) this.#snapshotProblem = null;
      log.info({ revision: state.revision, rules: state.document?.rules.length ?? 0 }, "rules updated");
    } else if (outcome.breaksChain) {
      this.rejected++;
      this.#onBreak(outcome.reason, event.revision);
      return;
    } else {
      this.rejected++;
      log.warn(
        { revision: event.revision, reason: outcome.reason },
        "rule event rejected; keeping the current rules",
      );
    }
    if (this.#target !== null && state.revision >= this.#target) {
      this.#target = null;
      this.#setProblem(null);
    }
    this.#deps.onChange();
    for (const wake of this.#waiters) wake();
  }

  #setProblem(problem: string | null): void {
    if (problem === this.#problem) return;
    this.#problem = problem;
    this.#deps.onChange();
  }
}
