import type {
  ArbiterStore,
  DecisionBatch,
  DecisionFilter,
  DecisionLog,
  Follower,
  RuleEventStore,
  SnapshotStore,
  StoredDecision,
  StoredRuleEvent,
} from "./contracts.js";
import {
  checkDecisionBatch,
  decisionMatches,
  decisionTexts,
  isSameBatch,
  sealedDecisionTexts,
} from "./decision-batch.js";
import { RuleConflictError, StoreUnavailableError } from "./errors.js";
import { keepsStoredSnapshot } from "./text.js";

/**
 * An in-memory {@link ArbiterStore} with the same contract as the JetStream one: for unit tests
 * of the logic above the store, and nothing else (it keeps nothing across processes).
 */
export function createMemoryStore(): ArbiterStore {
  return {
    rules: new MemoryRuleEventStore(),
    snapshots: new MemorySnapshotStore(),
    decisions: new MemoryDecisionLog(),
    close: async () => {},
  };
}

class MemoryRuleEventStore implements RuleEventStore {
  readonly #events: string[] = [];
  readonly #followers = new Set<(event: StoredRuleEvent) => void>();

  async append(text: string, expectedRevision: number): Promise<number> {
    if (expectedRevision !== this.#events.length)
      throw new RuleConflictError(expectedRevision, this.#events.length);
    this.#events.push(text);
    const event = { revision: this.#events.length, text };
    for (const follower of this.#followers) follower(event);
    return event.revision;
  }

  async lastRevision(): Promise<number> {
    return this.#events.length;
  }

  async get(revision: number): Promise<StoredRuleEvent | null> {
    const text = this.#events[revision - 1];
    return revision >= 1 && text !== undefined ? { revision, text } : null;
  }

  async *read(range: { from?: number; to?: number } = {}): AsyncIterable<StoredRuleEvent> {
    const to = Math.min(range.to ?? this.#events.length, this.#events.length);
    for (let revision = Math.max(range.from ?? 1, 1); revision <= to; revision++) {
      yield { revision, text: this.#events[revision - 1]! };
    }
  }

  async follow(from: number, onEvent: (event: StoredRuleEvent) => void): Promise<Follower> {
    for await (const event of this.read({ from })) onEvent(event);
    this.#followers.add(onEvent);
    let end: (value: null) => void = () => {};
    const ended = new Promise<Error | null>((resolve) => {
      end = resolve;
    });
    return {
      ended,
      stop: async () => {
        this.#followers.delete(onEvent);
        end(null);
      },
    };
  }
}

class MemorySnapshotStore implements SnapshotStore {
  #latest: string | null = null;

  async load(): Promise<string | null> {
    return this.#latest;
  }

  async save(text: string, revision: number): Promise<void> {
    if (this.#latest === null || !keepsStoredSnapshot(this.#latest, text, revision)) this.#latest = text;
  }
}

class MemoryDecisionLog implements DecisionLog {
  readonly #messages: { lines: Uint8Array; signature: string; at: Date }[] = [];
  readonly #ids = new Map<string, number>();
  readonly #waiters = new Set<() => void>();

  async append(batch: DecisionBatch): Promise<{ seq: number; duplicate: boolean }> {
    checkDecisionBatch(batch);
    const id = batch.decisionIds[0]!;
    const existing = this.#ids.get(id);
    if (existing !== undefined) {
      const stored = this.#messages[existing - 1]!;
      if (!isSameBatch(batch, { data: stored.lines, signature: stored.signature })) {
        throw new StoreUnavailableError(
          `the decision log took decision ${id} for a duplicate of message ${existing}, which holds other decisions: this batch was not stored`,
        );
      }
      return { seq: existing, duplicate: true };
    }
    this.#messages.push({ lines: Uint8Array.from(batch.lines), signature: batch.signature, at: new Date() });
    const seq = this.#messages.length;
    this.#ids.set(id, seq);
    for (const wake of this.#waiters) wake();
    return { seq, duplicate: false };
  }

  async *read(filter: DecisionFilter = {}): AsyncIterable<StoredDecision> {
    let next = Math.max((filter.fromSeq ?? 1) - 1, 0);
    for (;;) {
      while (next < this.#messages.length) {
        const message = this.#messages[next]!;
        next++;
        if (filter.since !== undefined && message.at < filter.since) continue;
        const texts =
          filter.sealed === false
            ? decisionTexts(message.lines)
            : sealedDecisionTexts(message.lines, message.signature);
        for (const [index, text] of texts.entries()) {
          if (decisionMatches(text, filter)) yield { seq: next, index, text };
        }
      }
      if (!filter.follow || filter.signal?.aborted) return;
      await new Promise<void>((resolve) => {
        const wake = () => {
          this.#waiters.delete(wake);
          filter.signal?.removeEventListener("abort", wake);
          resolve();
        };
        this.#waiters.add(wake);
        filter.signal?.addEventListener("abort", wake, { once: true });
      });
    }
  }
}
