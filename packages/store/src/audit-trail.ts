import { DecisionV1, RuleEventV1 } from "@arbiter/protocol";
import { evolveRuleset, initialRulesetState, type RulesetState, type RulesetTrust } from "@arbiter/rules";
import { sealedSignedMessage, verifySignature, verifySignedJson } from "@arbiter/trust";
import { parseJsonOrNull } from "./text.js";
import { verifyDecision } from "./verify-decision.js";

/** One record of the trail that does not verify, or a place where records are missing. */
export interface TrailFailure {
  /** The stream the record is (or was) in: the rules stream or the decision stream. */
  readonly stream: string;
  /** Its sequence in that stream (the first one missing, for a gap). */
  readonly seq: number;
  /** Its place in its decision message; null for rule events and gaps. */
  readonly index: number | null;
  readonly decisionId: string | null;
  readonly eventId: string | null;
  /** The worker key a decision names. */
  readonly worker: string | null;
  /** The rules revision a decision names, or the revision of a rule event. */
  readonly revision: number | null;
  readonly reason: string;
}

/** What {@link TrailVerifier} needs to know besides the records. */
export interface TrailVerifierOptions {
  /** Names of the two streams, as failures name them. */
  readonly streams: { readonly rules: string; readonly decisions: string };
  /** Admin keys whose rule events count (as the workers accept them). */
  readonly adminKeys: Iterable<string>;
  /** Worker keys enrolled by configuration, valid at every revision. */
  readonly configured?: readonly string[];
  /** The most failures listed one by one (default 100); the counts cover them all. */
  readonly maxListed?: number;
}

/** Where the decisions read start and end, so that records missing at either end are seen. */
export interface DecisionBounds {
  /**
   * The stream's first sequence (stream info `first_seq`): records before it are past retention.
   * When the read starts at a time (`--since`), null: there is no expected first record.
   */
  readonly firstSeq: number | null;
  /**
   * The last sequence the read should reach (the stream's `last_seq` when it started); null when
   * it ends at a time (`--until`).
   */
  readonly lastSeq: number | null;
  /** The stream's own first sequence, to say where retention cut it (even when a window is read). */
  readonly retainedFrom: number;
}

/** The outcome of an audit of the rules history and the decision log. */
export interface TrailReport {
  readonly deployment: string | null;
  readonly rules: {
    readonly events: number;
    readonly applied: number;
    /** Events the workers skip for what they say (a key enrolled twice, …), not for their integrity. */
    readonly rejected: number;
    readonly failed: number;
    /** Events after the break, which are not applied (nor listed: the break is the failure). */
    readonly afterBreak: number;
    /** The first event that does not chain, and why. */
    readonly broken: { readonly revision: number; readonly reason: string } | null;
  };
  readonly decisions: {
    readonly messages: number;
    readonly checked: number;
    readonly verified: number;
    readonly failed: number;
    /** Sequences (messages) missing between the first and the last read, or at either bound. */
    readonly missing: number;
    readonly firstSeq: number | null;
    readonly lastSeq: number | null;
  };
  /**
   * Set when the decision stream no longer holds its first records (its first sequence is past 1):
   * they aged out under the stream's limits, which is not a failure.
   */
  readonly retention: { readonly stream: string; readonly firstSeq: number; readonly note: string } | null;
  /** Failures in stream order (rules first), at most `maxListed` of them. */
  readonly failures: readonly TrailFailure[];
  /** How many failures there are in all, listed or not. */
  readonly failureCount: number;
  readonly valid: boolean;
}

const DEFAULT_MAX_LISTED = 100;

/** The records of one decision message seen so far. */
interface OpenMessage {
  readonly seq: number;
  readonly worker: string | null;
  /** The batch size the records' proofs name (the first one read). */
  readonly size: number | null;
  nextIndex: number;
  lastRevision: number | null;
  /** The earlier message holding the same batch (its signature seen there), or null. */
  readonly copyOf: number | null;
}

/**
 * How much of a batch signature names it among the messages read: 96 bits, so honest batches never
 * collide and no key holder can make two batches that do, at a fraction of the memory.
 */
const SEAL_ID_CHARS = 16;

/**
 * Checks the rules history and the decision log record by record, as they are read (from the
 * streams or from an export file), holding only the current message and the failures listed: feed
 * every rule event with `ruleEvent` in stream order, then call `startDecisions`, feed every
 * decision record with `decision` in stream order, and take the `report`.
 */
export interface TrailVerifier {
  /** Checks the rule event stored at `seq` (its revision) with its exact text; throws TypeError after `startDecisions`. */
  ruleEvent(seq: number, text: string): void;
  /** Ends the rules and starts the decisions, with where their read starts and ends. */
  startDecisions(bounds: DecisionBounds): void;
  /** Checks the decision record at `index` of the message stored at `seq`, with its sealed text. */
  decision(seq: number, index: number, text: string): void;
  /** Moves the bounds once the read is over (records aged out while it ran are past retention). */
  updateBounds(bounds: Partial<DecisionBounds>): void;
  /** The folded rules so far (after `startDecisions`: the whole history). */
  readonly state: RulesetState;
  /** The report, once every record has been fed (later calls return the same). */
  report(): TrailReport;
}

/**
 * A {@link TrailVerifier}. A rule event fails when it is not a rule event signed by an accepted
 * admin key, or when it is the first not in its place in the chain (sequence order, `prev`,
 * deployment; the events after that break are counted, not failed one by one). A decision fails as
 * `verifyDecision` says, and when its message is out of order, its record out of its batch's order,
 * its revision before the one of the record before it in the same batch (a worker's rules only
 * advance while it fills a batch), or past the last revision of the rules. A sequence missing
 * between the first and the last message (a deleted message), or at the bounds given, fails; the
 * records before the stream's first sequence are past retention and do not.
 */
export function createTrailVerifier(options: TrailVerifierOptions): TrailVerifier {
  return new TrailChecker(options);
}

class TrailChecker implements TrailVerifier {
  readonly #options: TrailVerifierOptions;
  readonly #trust: RulesetTrust;
  readonly #maxListed: number;
  readonly #failures: TrailFailure[] = [];
  #failureCount = 0;
  #state: RulesetState = initialRulesetState();
  #rules = { events: 0, applied: 0, rejected: 0, failed: 0, afterBreak: 0, lastSeq: 0 };
  #decisions = { messages: 0, checked: 0, verified: 0, failed: 0, missing: 0 };
  #bounds: DecisionBounds | null = null;
  #firstSeq: number | null = null;
  #lastSeq: number | null = null;
  #message: OpenMessage | null = null;
  #report: TrailReport | null = null;

  constructor(options: TrailVerifierOptions) {
    this.#options = options;
    this.#trust = { adminKeys: new Set(options.adminKeys) };
    this.#maxListed = options.maxListed ?? DEFAULT_MAX_LISTED;
  }

  #fail(failure: Partial<TrailFailure> & Pick<TrailFailure, "stream" | "seq" | "reason">): void {
    this.#failureCount++;
    if (this.#failures.length < this.#maxListed) {
      this.#failures.push({
        index: null,
        decisionId: null,
        eventId: null,
        worker: null,
        revision: null,
        ...failure,
      });
    }
  }

  /** Checks the rule event stored at `seq` (its revision) with its exact text. */
  ruleEvent(seq: number, text: string): void {
    if (this.#bounds !== null) throw new TypeError("rule events come before the decisions");
    const stream = this.#options.streams.rules;
    this.#rules.events++;
    const parsed = RuleEventV1.safeParse(parseJsonOrNull(text));
    const eventId = parsed.success ? parsed.data.eventId : null;
    const fail = (reason: string) => {
      this.#rules.failed++;
      this.#fail({ stream, seq, eventId, revision: seq, reason });
    };
    const last = this.#rules.lastSeq;
    if (seq <= last) {
      fail(`out of order: rule event ${seq} comes after rule event ${last}`);
      return;
    }
    const gapped = seq > last + 1;
    if (gapped) {
      const gap = seq - last - 1;
      this.#rules.failed++;
      this.#fail({
        stream,
        seq: last + 1,
        revision: last + 1,
        reason:
          gap === 1
            ? `rule event ${last + 1} is missing (the rules stream keeps every event: it was deleted, or left out)`
            : `rule events ${last + 1}–${seq - 1} are missing (the rules stream keeps every event: they were deleted, or left out)`,
      });
    }
    this.#rules.lastSeq = seq;
    const before = this.#state;
    const { state, outcome } = evolveRuleset(before, { revision: seq, text }, this.#trust);
    this.#state = state;
    if (outcome.applied) {
      this.#rules.applied++;
      return;
    }
    if (!parsed.success) {
      fail(outcome.reason);
      return;
    }
    if (!this.#trust.adminKeys.has(parsed.data.actor)) {
      fail(`signed by ${parsed.data.actor}, which is not an accepted admin key`);
      return;
    }
    if (!verifySignedJson(text, parsed.data.actor)) {
      fail(`the signature by ${parsed.data.actor} is not valid`);
      return;
    }
    // After a break nothing is applied: the break is the failure, the events after it are counted.
    if (before.broken !== null) {
      this.#rules.afterBreak++;
      return;
    }
    // The event after a gap is out of order only because of the gap, which is reported already.
    if (gapped && /arrived out of order/.test(outcome.reason)) return;
    if (outcome.breaksChain || /out of order|unchained format/.test(outcome.reason)) {
      fail(outcome.reason);
      return;
    }
    this.#rules.rejected++;
  }

  /** Ends the rules and starts the decisions, with where their read starts and ends. */
  startDecisions(bounds: DecisionBounds): void {
    if (this.#bounds !== null) throw new TypeError("the decisions were started already");
    this.#bounds = bounds;
  }

  /** The folded rules so far (after {@link startDecisions}: the whole history). */
  get state(): RulesetState {
    return this.#state;
  }

  /** The last batch signature checked: the records of one batch sign the same root. */
  #seal: { key: string; message: string; signature: string; valid: boolean } | null = null;

  /** The message each batch signature was first read in. */
  readonly #seals = new Map<string, number>();
  /** The batch signature of the record being checked, once its seal was read. */
  #sealRead: string | null = null;

  /** `verifySealedJson`, checking a batch's signature once for all of its records. */
  readonly #checkSeal = (text: string, key: string): boolean => {
    const signed = sealedSignedMessage(text);
    if (signed === null) return false;
    this.#sealRead = signed.signature;
    const last = this.#seal;
    if (last && last.key === key && last.message === signed.message && last.signature === signed.signature) {
      return last.valid;
    }
    const valid = verifySignature(key, signed.message, signed.signature);
    this.#seal = { key, ...signed, valid };
    return valid;
  };

  /** Checks the decision record at `index` of the message stored at `seq`, with its sealed text. */
  decision(seq: number, index: number, text: string): void {
    const bounds = this.#bounds;
    if (bounds === null) throw new TypeError("call startDecisions before the first decision");
    const stream = this.#options.streams.decisions;
    this.#sealRead = null;
    const result = verifyDecision(
      text,
      {
        deployment: this.#state.deployment,
        workers: this.#state.workers,
        ...(this.#options.configured ? { configured: this.#options.configured } : {}),
      },
      this.#checkSeal,
    );
    const record = result.decision ?? recordOf(text);
    const named = {
      stream,
      seq,
      index,
      decisionId: record?.decisionId ?? claimedId(text),
      worker: record?.worker.publicKey ?? null,
      revision: record?.revision ?? null,
    };
    this.#decisions.checked++;
    let reason: string | null = result.valid ? null : result.reason;

    const open = this.#message;
    if (open === null || seq !== open.seq) {
      if (open !== null && seq < open.seq) {
        reason ??= `out of order: message ${seq} comes after message ${open.seq}`;
        this.#count(named, reason);
        return;
      }
      this.#closeMessage();
      this.#gapBefore(seq);
      this.#message = {
        seq,
        worker: named.worker,
        size: record?.proof.size ?? null,
        nextIndex: 0,
        lastRevision: null,
        copyOf: this.#firstHolder(seq),
      };
      this.#decisions.messages++;
      this.#firstSeq ??= seq;
      this.#lastSeq = seq;
    }
    const message = this.#message!;
    if (index > message.nextIndex) this.#missingRecords(message, index - 1);
    if (reason === null && message.copyOf !== null) {
      reason = `a copy of message ${message.copyOf} (the same batch, signed once, stored again)`;
    }
    if (reason === null && index < message.nextIndex) {
      reason = `out of order: record ${index} comes after record ${message.nextIndex - 1} of its message`;
    }
    if (reason === null && record !== null && record.proof.index !== index) {
      reason = `it is record ${record.proof.index} of its batch, read as record ${index}`;
    }
    if (reason === null && record !== null && message.size !== null && record.proof.size !== message.size) {
      reason = `its proof names a batch of ${record.proof.size} records, another record of message ${seq} one of ${message.size}`;
    }
    if (reason === null && named.worker !== message.worker) {
      reason = `signed by ${named.worker}, another record of message ${seq} by ${message.worker}`;
    }
    if (
      reason === null &&
      record !== null &&
      message.lastRevision !== null &&
      record.revision < message.lastRevision
    ) {
      reason = `its revision ${record.revision} goes back from revision ${message.lastRevision} of the record before it in its batch`;
    }
    if (reason === null && record !== null && record.revision > this.#rules.lastSeq) {
      reason = `names revision ${record.revision}, past the last rule event (${this.#rules.lastSeq})`;
    }
    message.nextIndex = Math.max(message.nextIndex, index + 1);
    if (record !== null) message.lastRevision = record.revision;
    if (reason !== null) {
      this.#count(named, reason);
      return;
    }
    this.#decisions.verified++;
  }

  /**
   * The earlier message that holds the batch whose signature was just read, or null; otherwise
   * notes `seq` as its holder. A batch is signed once and stored once, so a second message with
   * its signature is a copy, whatever place it was put in (one left out, at the end).
   */
  #firstHolder(seq: number): number | null {
    if (this.#sealRead === null) return null;
    const id = this.#sealRead.slice(0, SEAL_ID_CHARS);
    const earlier = this.#seals.get(id);
    if (earlier !== undefined) return earlier;
    this.#seals.set(id, seq);
    return null;
  }

  #count(named: Omit<TrailFailure, "reason" | "eventId">, reason: string): void {
    this.#decisions.failed++;
    this.#fail({ ...named, reason });
  }

  /** A message's records past the last one read are missing when its proofs name more. */
  #closeMessage(): void {
    const open = this.#message;
    this.#message = null;
    if (open !== null && open.size !== null && open.nextIndex < open.size) {
      this.#missingRecords(open, open.size - 1);
    }
  }

  /** Records `message.nextIndex`…`last` of a message, missing from what was read. */
  #missingRecords(message: OpenMessage, last: number): void {
    const first = message.nextIndex;
    const of = message.size === null ? "" : ` (its batch holds ${message.size})`;
    this.#decisions.failed++;
    this.#fail({
      stream: this.#options.streams.decisions,
      seq: message.seq,
      index: first,
      worker: message.worker,
      reason:
        first === last
          ? `record ${first} of message ${message.seq} is missing${of}`
          : `records ${first}–${last} of message ${message.seq} are missing${of}`,
    });
  }

  /** Sequences missing between the last message read and `seq`. */
  #gapBefore(seq: number): void {
    const after = this.#lastSeq;
    if (after === null || seq <= after + 1) return;
    this.#missing(after + 1, seq - 1);
  }

  /**
   * Moves the bounds once the read is over: a stream whose limits aged records out while it was
   * read starts later than it did (`firstSeq`, `retainedFrom`), which is no gap.
   */
  updateBounds(bounds: Partial<DecisionBounds>): void {
    if (this.#bounds === null) throw new TypeError("call startDecisions first");
    this.#bounds = { ...this.#bounds, ...bounds };
  }

  #missing(from: number, to: number): void {
    this.#decisions.missing += to - from + 1;
    this.#fail({
      stream: this.#options.streams.decisions,
      seq: from,
      reason:
        from === to
          ? `message ${from} is missing (deleted from the stream, or left out)`
          : `messages ${from}–${to} are missing (deleted from the stream, or left out)`,
    });
  }

  /** The report, once every record has been fed (later calls return the same). */
  report(): TrailReport {
    this.#report ??= this.#finish();
    return this.#report;
  }

  #finish(): TrailReport {
    const bounds = this.#bounds ?? { firstSeq: null, lastSeq: null, retainedFrom: 1 };
    this.#closeMessage();
    const read = this.#firstSeq;
    if (bounds.firstSeq !== null && read !== null && read > bounds.firstSeq) {
      this.#missing(bounds.firstSeq, read - 1);
    }
    if (bounds.lastSeq !== null) {
      const after = this.#lastSeq ?? (bounds.firstSeq === null ? null : bounds.firstSeq - 1);
      if (after !== null && bounds.lastSeq > after) this.#missing(after + 1, bounds.lastSeq);
    }
    const broken = this.#state.broken;
    const retention =
      bounds.retainedFrom > 1
        ? {
            stream: this.#options.streams.decisions,
            firstSeq: bounds.retainedFrom,
            note: `records before seq ${bounds.retainedFrom} are past retention`,
          }
        : null;
    return {
      deployment: this.#state.deployment,
      rules: {
        events: this.#rules.events,
        applied: this.#rules.applied,
        rejected: this.#rules.rejected,
        failed: this.#rules.failed,
        afterBreak: this.#rules.afterBreak,
        broken,
      },
      decisions: { ...this.#decisions, firstSeq: this.#firstSeq, lastSeq: this.#lastSeq },
      retention,
      failures: [...this.#failures],
      failureCount: this.#failureCount,
      valid: this.#failureCount === 0 && broken === null,
    };
  }
}

/** The `decisionId` a text that is no decision record claims, to name it by; null when none. */
function claimedId(text: string): string | null {
  const value = parseJsonOrNull(text);
  if (typeof value !== "object" || value === null || !("decisionId" in value)) return null;
  return typeof value.decisionId === "string" ? value.decisionId : null;
}

/** The record a text holds, for naming it when it does not verify; null when it is none. */
function recordOf(text: string): DecisionV1 | null {
  const parsed = DecisionV1.safeParse(parseJsonOrNull(text));
  return parsed.success ? parsed.data : null;
}
