import { ArbiterError, ErrorCode } from "@arbiter/protocol";
import {
  evolveRuleset,
  initialRulesetState,
  type RulesetState,
  type RulesetTrust,
  restoreSnapshot,
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
  /** Called whenever {@link RulesFollower.problem} changes. */
  readonly onChange: () => void;
}

/**
 * Keeps a worker's rules current: restores the snapshot, follows the rule events and folds them.
 * When the feed ends on its own it reports a problem, follows again from its revision (with
 * backoff) and clears the problem once it has caught up with the stream.
 */
export class RulesFollower {
  readonly #deps: RulesFollowerDeps;
  readonly #waiters = new Set<() => void>();
  #ruleset: RulesetState = initialRulesetState();
  #follower: Follower | undefined;
  #problem: string | null = null;
  #stopped = false;
  #retry: NodeJS.Timeout | undefined;
  /** The revision to reach before the follower counts as caught up, or null once there. */
  #target: number | null = null;
  applied = 0;
  rejected = 0;
  restarts = 0;

  constructor(deps: RulesFollowerDeps) {
    this.#deps = deps;
  }

  /** The folded rules decisions are made under now. */
  get ruleset(): RulesetState {
    return this.#ruleset;
  }

  /** Why the rules may be stale (behind the stream, or the feed broken); null when current. */
  get problem(): string | null {
    return this.#problem;
  }

  /**
   * Restores the snapshot, starts following, and waits up to `catchUpTimeoutMs` to catch up.
   * Resolves either way (a problem is reported when it did not catch up); rejects with
   * `StoreUnavailableError` when the store cannot be read at all.
   */
  async start(catchUpTimeoutMs: number): Promise<void> {
    const { store, trust, log } = this.#deps;
    const snapshot = await store.snapshots.load();
    if (snapshot !== null) {
      const restored = restoreSnapshot(snapshot, trust);
      if (restored.ok) this.#ruleset = restored.state;
      else log.warn({ reason: restored.reason }, "ignoring the rules snapshot; reading the whole history");
    }
    await this.#follow();
    try {
      await this.waitForRevision(this.#target ?? 0, catchUpTimeoutMs);
    } catch {
      log.error(
        { target: this.#target, revision: this.#ruleset.revision },
        "did not catch up with the rule events in time; serving degraded",
      );
    }
  }

  /** Stops following; the current rules stay readable. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#retry);
    const follower = this.#follower;
    this.#follower = undefined;
    await follower?.stop();
  }

  /** Resolves once rule events up to `revision` are folded; rejects with STORE_UNAVAILABLE at `timeoutMs`. */
  waitForRevision(revision: number, timeoutMs = 30_000): Promise<void> {
    if (this.#ruleset.revision >= revision) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const check = () => {
        if (this.#ruleset.revision < revision) return;
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

  /** Follows from the current revision on, and watches for the feed's end. */
  async #follow(): Promise<void> {
    const { store } = this.#deps;
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
    const { state, outcome } = evolveRuleset(this.#ruleset, event, trust);
    this.#ruleset = state;
    if (outcome.applied) {
      this.applied++;
      log.info({ revision: state.revision, rules: state.document?.rules.length ?? 0 }, "rules updated");
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
    for (const wake of this.#waiters) wake();
  }

  #setProblem(problem: string | null): void {
    if (problem === this.#problem) return;
    this.#problem = problem;
    this.#deps.onChange();
  }
}
