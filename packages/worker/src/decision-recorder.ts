import type { UnsignedDecisionV1 } from "@arbiter/protocol";
import { type DecisionLog, signDecisionBatch, splitDecisionBatches } from "@arbiter/store";
import type { Signer } from "@arbiter/trust";
import type { Msg } from "@nats-io/nats-core";
import type { Logger } from "pino";
import { RateLimitedWarning } from "./rate-limited-warning.js";
import { messageBytes } from "./request-queue.js";

/** Most decisions signed together and, as far as NATS's max_payload allows, stored in one message. */
const DECISIONS_PER_BATCH = 32;

/** A decision made, waiting to be signed, recorded and (when `answer`) answered. */
export interface Decided {
  readonly msg: Msg;
  readonly requestId: string;
  readonly record: UnsignedDecisionV1;
  /** The record's JSON text in UTF-8, on one line. */
  readonly body: Uint8Array;
  /** False for a request that is recorded but must not be answered (a refused reply subject). */
  readonly answer: boolean;
}

/** What {@link DecisionRecorder} needs. */
export interface DecisionRecorderDeps {
  readonly log: DecisionLog;
  readonly signer: Signer;
  readonly logger: Logger;
  /** The decision log connection's max_payload (undefined before the server's INFO). */
  readonly maxPayload: () => number | undefined;
  readonly onLogOutage: "silent" | "deny";
  /** Called whenever {@link DecisionRecorder.problem} changes. */
  readonly onChange: () => void;
}

/** Counters of a {@link DecisionRecorder}. */
export interface RecorderStats {
  decisions: number;
  permitted: number;
  denied: number;
  /** Decisions the log did not acknowledge (answered per `onLogOutage`, or not at all). */
  logFailures: number;
  /** Requests left unanswered because the log did not acknowledge (`onLogOutage: "silent"`). */
  unansweredOutage: number;
}

/**
 * Records decisions and only then answers them: decisions are batched (one message per burst, as
 * far as max_payload allows), each batch signed once and appended to the decision log, and each
 * request answered once its batch is acknowledged. When the log does not acknowledge, nothing is
 * answered by default (`onLogOutage: "deny"` answers a denial), and the recorder reports the
 * outage as a problem until an append succeeds again.
 */
export class DecisionRecorder {
  readonly #deps: DecisionRecorderDeps;
  readonly #inFlight = new Set<Promise<void>>();
  readonly #outageWarning: RateLimitedWarning;
  #pending: Decided[] = [];
  #held = 0;
  #heldBytes = 0;
  #problem: string | null = null;
  readonly stats: RecorderStats = {
    decisions: 0,
    permitted: 0,
    denied: 0,
    logFailures: 0,
    unansweredOutage: 0,
  };

  constructor(deps: DecisionRecorderDeps) {
    this.#deps = deps;
    this.#outageWarning = new RateLimitedWarning(
      deps.logger,
      deps.onLogOutage === "deny"
        ? "decision log unavailable: denying requests"
        : "decision log unavailable: leaving requests unanswered (hosts fail closed and ask again)",
      "requests",
      () => ({ reason: this.#problem }),
    );
  }

  /** Why decisions cannot be recorded now; null while the log acknowledges. */
  get problem(): string | null {
    return this.#problem;
  }

  /** Batches being signed, stored or answered. */
  get inFlight(): number {
    return this.#inFlight.size;
  }

  /**
   * Requests handed over and not yet answered or given up: in the open batch or waiting for their
   * acknowledgement. Each still holds its message and record in memory.
   */
  get held(): number {
    return this.#held;
  }

  /**
   * The bytes of the records of {@link DecisionRecorder.held} requests (each holds its request),
   * and of what their messages hold beyond the request's body (headers, subjects).
   */
  get heldBytes(): number {
    return this.#heldBytes;
  }

  /** Adds a decision to the open batch; {@link DecisionRecorder.flush} records it. */
  add(decided: Decided): void {
    this.#pending.push(decided);
    this.#held++;
    this.#heldBytes += heldBytesOf(decided);
  }

  /**
   * Records the open batch if it is full, or whatever is open when `more` is false (no request
   * waiting behind it): one message per burst of requests.
   */
  flush(more: boolean): void {
    const pending = this.#pending;
    if (pending.length === 0 || (more && pending.length < DECISIONS_PER_BATCH)) return;
    this.#pending = [];
    const work = this.#record(pending).catch((err: unknown) =>
      // #record answers every failure itself; this only keeps a defect from becoming a crash.
      this.#deps.logger.error({ err }, "unexpected failure answering requests"),
    );
    this.#inFlight.add(work);
    void work.finally(() => this.#inFlight.delete(work));
  }

  /** Resolves when every batch handed over so far is recorded and answered. */
  async settled(): Promise<void> {
    this.flush(false);
    while (this.#inFlight.size > 0) await Promise.allSettled([...this.#inFlight]);
  }

  /** Reports outage counts not yet logged (for `stop()`). */
  flushWarnings(): void {
    this.#outageWarning.flush();
  }

  /** Answers `msg`; a failure to send is logged, never thrown. */
  reply(msg: Msg, requestId: string, permitted: boolean, message: string): void {
    try {
      msg.respond(Buffer.from(JSON.stringify({ requestId, permitted, message })));
    } catch (err) {
      this.#deps.logger.error({ err, requestId }, "could not send the answer");
    }
  }

  /** Stores `decided` in as few messages as max_payload allows, answering each request after. */
  async #record(decided: readonly Decided[]): Promise<void> {
    try {
      const lines = decided.map((d) => ({ decisionId: d.record.decisionId, body: d.body }));
      await Promise.all(
        splitDecisionBatches(lines, this.#deps.maxPayload()).map(([from, to]) =>
          this.#appendAndAnswer(decided.slice(from, to), lines.slice(from, to)),
        ),
      );
    } finally {
      this.#held -= decided.length;
      for (const d of decided) this.#heldBytes -= heldBytesOf(d);
    }
  }

  async #appendAndAnswer(
    decided: readonly Decided[],
    lines: readonly { decisionId: string; body: Uint8Array }[],
  ): Promise<void> {
    try {
      const batch = signDecisionBatch(lines, this.#deps.signer);
      await this.#deps.log.append(batch);
    } catch (err) {
      this.#onFailure(decided, err);
      return;
    }
    this.#setProblem(null);
    const { stats } = this;
    for (const d of decided) {
      stats.decisions++;
      if (d.record.permitted) stats.permitted++;
      else stats.denied++;
      if (d.answer) this.reply(d.msg, d.requestId, d.record.permitted, d.record.message);
    }
  }

  #onFailure(decided: readonly Decided[], err: unknown): void {
    const reason = err instanceof Error ? err.message : String(err);
    this.stats.logFailures += decided.length;
    this.#setProblem(`the decision log does not acknowledge: ${reason}`);
    this.#outageWarning.count(decided.length, { err });
    if (this.#deps.onLogOutage === "silent") {
      this.stats.unansweredOutage += decided.length;
      return;
    }
    const message = `Arbiter's decision log is unavailable, so nothing can be permitted: ${reason}`;
    for (const d of decided) if (d.answer) this.reply(d.msg, d.requestId, false, message);
  }

  #setProblem(problem: string | null): void {
    if (problem === this.#problem) return;
    this.#problem = problem;
    this.#deps.onChange();
  }
}

/** What a decision waiting for the log holds: its record, and its message beyond the body the record holds a copy of. */
function heldBytesOf(decided: Decided): number {
  return decided.body.length + messageBytes(decided.msg) - decided.msg.data.length;
}
