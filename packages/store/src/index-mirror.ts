import { type EventLoopUtilization, performance } from "node:perf_hooks";
import { setTimeout as delay } from "node:timers/promises";
import { type ActiveDecisionV1, type HostRecordV1, resourceNames } from "@arbiter/protocol";
import { type JetStreamManager, jetstreamManager } from "@nats-io/jetstream";
import type { Msg, NatsConnection, Subscription } from "@nats-io/nats-core";
import { hostRecordKey, parseEntryBytes, parseHostRecord, takeWrittenEntry } from "./active-index.js";
import { DirectGetMux, type DirectMessage, readsInFlight } from "./direct-get.js";
import { StoreUnavailableError } from "./errors.js";
import { RepublishedSequence } from "./republished-sequence.js";
import { errorText } from "./text.js";

/** One key of the bucket as the mirror holds it: the sequence of its last write, and an entry's bytes. */
interface Slot {
  readonly seq: number;
  /**
   * The stored value of a live entry (`e.`) or host record (`h.`); null for a deleted key and for
   * the other keys (request id claims, scan reports).
   */
  raw: Uint8Array | null;
  /** The entry parsed from `raw`, once a scan read it (undefined: not yet; null: does not parse). */
  parsed?: ActiveDecisionV1 | null;
  /** The host record parsed from `raw`, likewise. */
  host?: HostRecordV1 | null;
}

/** Why a mirror cannot be used for a scan now (see {@link IndexMirror.view}). */
export type MirrorUnavailable =
  | "no republish"
  | "not hearing the bucket"
  | "too large"
  | "incomplete"
  | "behind the bucket"
  | "count differs"
  | "closed";

/**
 * The active index as one worker's mirror holds it, complete as of the moment it was asked for.
 * While a view is held the mirror parses nothing ahead (the scan has the thread); disposing of it
 * lets the mirror go on.
 */
export interface MirrorView extends Disposable {
  /** The keys of every entry, in no particular order (sorted, a host's entries are side by side). */
  keys(): string[];
  /** The entries under `keys`, in that order; a key with no entry is left out. */
  entriesOf(keys: readonly string[]): AsyncIterable<ActiveDecisionV1>;
  /**
   * The same entries in runs read at once (a turn of the event loop between two runs): for a scan,
   * which would otherwise wait for each entry.
   */
  entryRunsOf(keys: readonly string[]): AsyncIterable<readonly ActiveDecisionV1[]>;
  /** The lifecycle record of a host as the mirror holds it now (kept current while the scan runs), or null. */
  hostRecord(lattice: string, host: string): HostRecordV1 | null;
}

/** Counters of an {@link IndexMirror}. */
export interface IndexMirrorStats {
  /** Keys held (entries, request-id claims, host records, reports, deleted keys). */
  readonly keys: number;
  /** The last sequence of the bucket's stream the mirror has seen. */
  readonly seq: number;
  /** Complete reads of the bucket (the first one, and one after each gap). */
  readonly reloads: number;
  /** Views given for scans, and views refused (the scan then read the bucket itself). */
  readonly views: number;
  readonly refused: number;
  /**
   * Why the mirror was found incomplete: a sequence missing, a reconnect or slow-consumer notice,
   * stored writes that did not arrive in time, a key count unlike the stream's.
   */
  readonly gaps: number;
  readonly connectionEvents: number;
  readonly lateWrites: number;
  readonly countMismatches: number;
  /** Entries parsed (and prepared) ahead of a scan, and the times that was put off because a scan held a view. */
  readonly parsedAhead: number;
  readonly aheadPaused: number;
  /** Why the mirror hears no more writes (its subscription refused: the NATS permissions), or null. */
  readonly unheard: string | null;
}

/**
 * A worker's in-memory mirror of the active index, fed by nats-server's republish of every write
 * of the bucket onto `<prefix>.active.>`: a re-evaluation then reads no entry back from the
 * server. Stream sequences are contiguous and every write is republished, so a missing sequence
 * (a reconnect, a dropped message) shows a gap, after which the mirror reads the whole bucket
 * again. Before a scan, {@link view} checks the mirror against the stream's own state (its last
 * sequence and message count), so a purge or a deletion that nothing republished is noticed too.
 */
export interface IndexMirror {
  /**
   * The index as of now, when the mirror holds all of it; otherwise it reads the bucket again
   * first (when it can) and says why when it still cannot: the caller then reads the bucket.
   */
  view(): Promise<MirrorView | MirrorUnavailable>;
  readonly stats: IndexMirrorStats;
  close(): void;
}

/** Options for {@link openIndexMirror}. */
export interface IndexMirrorOptions {
  readonly prefix?: string;
  /** Longest wait for one read of the bucket, and for republished writes to arrive. */
  readonly timeoutMs?: number;
  /** Keys held at most; a larger bucket is read from the server at each scan. */
  readonly maxKeys?: number;
  /** Bytes of the bucket's stream held at most; likewise (see {@link DEFAULT_MIRROR_MAX_BYTES}). */
  readonly maxBytes?: number;
  /**
   * Called with each entry the mirror parses ahead of a scan (never during one), so that the
   * caller does its own work for the entry ahead too. An exception it throws is ignored.
   */
  readonly prepare?: (entry: ActiveDecisionV1) => void;
}

/** Keys a mirror holds unless configured: about 3 KB an entry once parsed, so some 600 MB at most. */
export const DEFAULT_MIRROR_MAX_KEYS = 200_000;

/**
 * Bytes of the bucket's stream a mirror holds unless configured: a host chooses how large its
 * requests, and so its entries, are (up to max_payload each), and every worker held every entry
 * parsed: a few thousand of a megabyte were more than a worker's heap. Some 600 MB once parsed.
 */
export const DEFAULT_MIRROR_MAX_BYTES = 256 * 1024 * 1024;

/** Reads of a reload in flight at once (as in the index's own listing). */
const READS_IN_FLIGHT = 512;

/** Entries a view yields before it lets the event loop read the socket (the republished writes meanwhile). */
const YIELD_EVERY = 1024;

/**
 * How often, and how many at most, entries written meanwhile are parsed (and prepared) ahead of the
 * next scan (some 20 µs each, a millisecond or a few at a time): a tenth of a core while the worker
 * is busy, up to two fifths while it is mostly idle (its event loop busy less than
 * {@link WARM_IDLE_BELOW} of the time since the last run). How many written keys are remembered for it.
 */
const WARM_EVERY_MS = 10;
const WARM_BATCH = 50;
const WARM_BATCH_IDLE = 200;
const WARM_IDLE_BELOW = 0.5;
const WARM_KEPT = 100_000;

/** How soon a mirror found incomplete reads the bucket again, doubling while that fails. */
const RELOAD_DELAY_MS = 100;
const MAX_RELOAD_DELAY_MS = 5000;

/** Longest wait for the writes a stream has stored to arrive republished. */
const CATCH_UP_MS = 2000;

/** Key counts remembered per sequence, to check the count at the stream's sequence when writes go on. */
const COUNTS_KEPT = 8192;

/**
 * Opens the mirror of the active bucket: subscribes to its republished writes and reads the bucket
 * once. A bucket without the republish (made by an earlier release on a server that cannot add one
 * to an existing stream) gives a mirror whose views are all refused with "no republish".
 */
export async function openIndexMirror(
  nc: NatsConnection,
  options: IndexMirrorOptions = {},
): Promise<IndexMirror> {
  const names = resourceNames(options.prefix);
  const stream = `KV_${names.activeBucket}`;
  const timeoutMs = options.timeoutMs ?? 10_000;
  let jsm: JetStreamManager;
  let republished: string | undefined;
  try {
    jsm = await jetstreamManager(nc, { timeout: timeoutMs });
    const info = await jsm.streams.info(stream);
    republished = info.config.republish?.dest;
  } catch (err) {
    throw new StoreUnavailableError(`cannot open the mirror of ${stream}: ${errorText(err)}`, { cause: err });
  }
  const mirror = new KvIndexMirror(nc, jsm, {
    bucket: names.activeBucket,
    stream,
    subjects: names.activeRepublishSubjects,
    timeoutMs,
    maxKeys: options.maxKeys ?? DEFAULT_MIRROR_MAX_KEYS,
    maxBytes: options.maxBytes ?? DEFAULT_MIRROR_MAX_BYTES,
    enabled: republished === names.activeRepublishSubjects,
    prepare: options.prepare,
  });
  return mirror;
}

interface MirrorConfig {
  readonly bucket: string;
  readonly stream: string;
  readonly subjects: string;
  readonly timeoutMs: number;
  readonly maxKeys: number;
  readonly maxBytes: number;
  readonly enabled: boolean;
  readonly prepare: ((entry: ActiveDecisionV1) => void) | undefined;
}

class KvIndexMirror implements IndexMirror {
  readonly #jsm: JetStreamManager;
  readonly #config: MirrorConfig;
  readonly #reads: DirectGetMux;
  readonly #subscription: Subscription | undefined;
  readonly #prefixLength: number;
  #slots = new Map<string, Slot>();
  /** Which writes have arrived; complete: every write up to its last sequence is in `#slots`. */
  readonly #sequence = new RepublishedSequence();
  /** While a reload runs, the slots it builds (republished writes go there too). */
  #building: Map<string, Slot> | null = null;
  #reloading: Promise<void> | null = null;
  #reloadTimer: NodeJS.Timeout | undefined;
  /** Parses entries ahead of the next scan, a few at a time (see {@link WARM_EVERY_MS}). */
  #warmer: NodeJS.Timeout | undefined;
  /** The event loop's use when the warmer last ran. */
  #warmedAt: EventLoopUtilization = performance.eventLoopUtilization();
  /** Keys written since the warmer last ran, whose entries it parses next. */
  #unparsed = new Set<string>();
  /** Views given and not yet disposed of: scans running on this worker's thread. */
  #viewsHeld = 0;
  readonly #counts: { seq: number; keys: number }[] = new Array(COUNTS_KEPT);
  #closed = false;
  #tooLarge = false;
  #unheard: string | null = null;
  #stats = {
    reloads: 0,
    views: 0,
    refused: 0,
    gaps: 0,
    connectionEvents: 0,
    lateWrites: 0,
    countMismatches: 0,
    parsedAhead: 0,
    aheadPaused: 0,
  };

  constructor(nc: NatsConnection, jsm: JetStreamManager, config: MirrorConfig) {
    this.#jsm = jsm;
    this.#config = config;
    this.#reads = new DirectGetMux(nc, config.stream, config.timeoutMs);
    this.#prefixLength = config.subjects.length - 1;
    if (config.enabled) {
      this.#subscription = nc.subscribe(config.subjects, {
        callback: (err, msg) => {
          // A subscription refused (NATS permissions without `arbiter.active.>`) hears nothing more:
          // no view from then on, every scan reads the server.
          if (err === null) this.#apply(msg);
          else {
            this.#unheard = err.message;
            this.#sequence.lose();
          }
        },
      });
      void this.#followConnection(nc);
      this.#warmer = setInterval(() => this.#warm(), WARM_EVERY_MS);
      this.#warmer.unref();
      // Read the bucket now, not at the first scan.
      this.#scheduleReload(0);
    }
  }

  /** Writes republished while the connection was down are lost: the mirror is incomplete after any. */
  async #followConnection(nc: NatsConnection): Promise<void> {
    for await (const status of nc.status()) {
      if (this.#closed) return;
      if (status.type === "disconnect" || status.type === "reconnect" || status.type === "slowConsumer") {
        this.#lost();
        this.#stats.connectionEvents++;
      }
    }
  }

  get stats(): IndexMirrorStats {
    return { keys: this.#slots.size, seq: this.#sequence.lastSeen, ...this.#stats, unheard: this.#unheard };
  }

  close(): void {
    this.#closed = true;
    clearTimeout(this.#reloadTimer);
    clearInterval(this.#warmer);
    this.#subscription?.unsubscribe();
    this.#reads.close();
    this.#slots = new Map();
  }

  async view(): Promise<MirrorView | MirrorUnavailable> {
    const refused = (why: MirrorUnavailable) => {
      this.#stats.refused++;
      return why;
    };
    if (!this.#config.enabled) return refused("no republish");
    if (this.#unheard !== null) return refused("not hearing the bucket");
    let why: MirrorUnavailable = "incomplete";
    // A mirror found wrong is read again once, at once: the scan waiting for it reads no less.
    for (let attempt = 0; attempt < 2; attempt++) {
      if (this.#closed) return refused("closed");
      const checked = await this.#check();
      if (typeof checked !== "string") {
        this.#stats.views++;
        return checked;
      }
      why = checked;
      if (why === "too large") break;
    }
    return refused(why);
  }

  /** The view when the mirror holds the bucket as it is now (read again first if it was incomplete). */
  async #check(): Promise<MirrorView | MirrorUnavailable> {
    let state = await this.#streamState();
    if (state.messages > this.#config.maxKeys || state.bytes > this.#config.maxBytes) {
      this.#tooLarge = true;
      this.#slots = new Map();
      this.#sequence.lose();
      return "too large";
    }
    this.#tooLarge = false;
    if (state.lastSeq < this.#sequence.lastSeen) {
      // Sequences only grow in a stream: this one was deleted and made again.
      this.#sequence.restart();
    }
    if (!this.#sequence.complete) {
      await this.#reload();
      if (!this.#sequence.complete) return "incomplete";
      state = await this.#streamState();
    }
    // The writes the stream has stored are on their way: wait for them, not for later ones. Ones
    // that do not come were lost (read the bucket again).
    const deadline = Date.now() + CATCH_UP_MS;
    const sequence = this.#sequence;
    while (sequence.complete && (sequence.lastSeen < state.lastSeq || sequence.awaiting(state.lastSeq))) {
      if (Date.now() > deadline) {
        this.#lost();
        this.#stats.lateWrites++;
        return "behind the bucket";
      }
      await delay(1);
    }
    if (!sequence.complete) return "incomplete";
    const counted = this.#countAt(state.lastSeq);
    if (counted !== null && counted !== state.messages) {
      // Something removed messages without a write (a purge of the stream): read it all again.
      this.#lost();
      this.#stats.countMismatches++;
      return "count differs";
    }
    return this.#viewOf(this.#slots);
  }

  #viewOf(slots: Map<string, Slot>): MirrorView {
    this.#viewsHeld++;
    let held = true;
    return {
      [Symbol.dispose]: () => {
        if (held) this.#viewsHeld--;
        held = false;
      },
      keys: () => {
        const keys: string[] = [];
        for (const [key, slot] of slots) if (slot.raw !== null && key.startsWith("e.")) keys.push(key);
        return keys;
      },
      entriesOf: (keys) => entriesOf(slots, keys),
      entryRunsOf: (keys) => entryRunsOf(slots, keys),
      hostRecord: (lattice, host) => {
        const slot = slots.get(hostRecordKey(lattice, host));
        if (slot === undefined || slot.raw === null) return null;
        if (slot.host === undefined) {
          slot.host = parseHostRecord(slot.raw);
          slot.raw = PARSED;
        }
        return slot.host;
      },
    };
  }

  /** The key count the mirror had right after `seq` was applied, when it still remembers it. */
  #countAt(seq: number): number | null {
    if (seq === 0) return this.#slots.size;
    const kept = this.#counts[seq % COUNTS_KEPT];
    return kept?.seq === seq ? kept.keys : null;
  }

  async #streamState(): Promise<{ lastSeq: number; messages: number; bytes: number }> {
    try {
      const info = await this.#jsm.streams.info(this.#config.stream);
      return { lastSeq: info.state.last_seq, messages: info.state.messages, bytes: info.state.bytes };
    } catch (err) {
      throw new StoreUnavailableError(`cannot read the state of ${this.#config.stream}: ${errorText(err)}`, {
        cause: err,
      });
    }
  }

  #apply(msg: Msg): void {
    if (this.#closed || this.#tooLarge) return;
    const seq = Number(msg.headers?.get("Nats-Sequence"));
    if (!(seq > 0)) return;
    const arrival = this.#sequence.arrive(seq);
    if (arrival.lost) {
      this.#stats.gaps++;
      this.#lost();
    }
    const key = msg.subject.slice(this.#prefixLength);
    const live = msg.headers?.get("KV-Operation") === "" && keptKey(key);
    // A copy: the message's bytes may share the buffer of everything read with them.
    const slot: Slot = { seq, raw: live ? new Uint8Array(msg.data) : null };
    this.#put(this.#slots, key, slot);
    if (this.#building !== null) this.#put(this.#building, key, slot);
    if (live && key.startsWith("e.") && this.#unparsed.size < WARM_KEPT) this.#unparsed.add(key);
    // Counted only where every write up to here is in: a count is compared with the stream's.
    if (this.#sequence.contiguous) {
      const at = this.#sequence.lastSeen;
      this.#counts[at % COUNTS_KEPT] = { seq: at, keys: this.#slots.size };
    }
  }

  /**
   * Parses up to {@link WARM_BATCH} ({@link WARM_BATCH_IDLE} when idle) entries written since the last time, so that the worker that
   * takes the next revision, whichever it is, finds its entries parsed: a bounded share of a core,
   * whatever the rate of writes. Not while a scan holds a view: it would take the scan's thread.
   */
  #warm(): void {
    const now = performance.eventLoopUtilization();
    const since = performance.eventLoopUtilization(now, this.#warmedAt);
    this.#warmedAt = now;
    // A reload's keys are in its own map until it is done (they would be dropped unparsed).
    if (this.#unparsed.size === 0 || this.#building !== null) return;
    if (this.#viewsHeld > 0) {
      this.#stats.aheadPaused++;
      return;
    }
    const { prepare } = this.#config;
    const batch = since.utilization < WARM_IDLE_BELOW ? WARM_BATCH_IDLE : WARM_BATCH;
    let done = 0;
    for (const key of this.#unparsed) {
      this.#unparsed.delete(key);
      const slot = this.#slots.get(key);
      const entry = slot === undefined ? null : parsedEntry(key, slot);
      if (entry !== null) this.#stats.parsedAhead++;
      if (entry !== null && prepare !== undefined) {
        try {
          prepare(entry);
        } catch {
          // The scan does the same work itself, and says what is wrong.
        }
      }
      if (++done === batch) break;
    }
  }

  /**
   * The mirror no longer holds all of the bucket: it is read again in the background shortly (once
   * at a time), so that the next scan finds it whole instead of waiting for that read.
   */
  #lost(): void {
    this.#sequence.lose();
    this.#scheduleReload(RELOAD_DELAY_MS);
  }

  #scheduleReload(delayMs: number): void {
    if (this.#closed || this.#tooLarge || !this.#config.enabled || this.#unheard !== null) return;
    if (this.#reloadTimer !== undefined) return;
    // A timer, not a wait: the reload runs in the background (unref'd, cleared by close()).
    this.#reloadTimer = setTimeout(() => {
      this.#reloadTimer = undefined;
      if (this.#sequence.complete || this.#closed) return;
      this.#reload().then(
        () => {
          if (!this.#sequence.complete) this.#scheduleReload(Math.min(delayMs * 2, MAX_RELOAD_DELAY_MS));
        },
        () => this.#scheduleReload(Math.min(delayMs * 2, MAX_RELOAD_DELAY_MS)),
      );
    }, delayMs);
    this.#reloadTimer.unref();
  }

  #put(slots: Map<string, Slot>, key: string, slot: Slot): void {
    const held = slots.get(key);
    if (held === undefined || held.seq < slot.seq) slots.set(key, slot);
  }

  #reload(): Promise<void> {
    this.#reloading ??= this.#readAll().finally(() => {
      this.#reloading = null;
    });
    return this.#reloading;
  }

  /**
   * Reads the whole bucket: its subject list (with the stream's last sequence of that moment), then
   * each subject's last message. Writes republished meanwhile go into the new slots too; the
   * mirror is complete when every write after the listing arrived.
   */
  async #readAll(): Promise<void> {
    const building = new Map<string, Slot>();
    this.#building = building;
    this.#sequence.startReading();
    let finished = false;
    try {
      const subjectPrefix = `$KV.${this.#config.bucket}.`;
      let listed: { subjects: string[]; lastSeq: number; bytes: number };
      try {
        const info = await this.#jsm.streams.info(this.#config.stream, {
          subjects_filter: `${subjectPrefix}>`,
        });
        listed = {
          subjects: Object.keys(info.state.subjects ?? {}),
          lastSeq: info.state.last_seq,
          bytes: info.state.bytes,
        };
      } catch (err) {
        throw new StoreUnavailableError(`cannot list ${this.#config.stream}: ${errorText(err)}`, {
          cause: err,
        });
      }
      if (listed.subjects.length > this.#config.maxKeys || listed.bytes > this.#config.maxBytes) {
        this.#tooLarge = true;
        return;
      }
      // A window of reads kept in flight, topped up in batches once half are answered (the reads
      // of a batch leave in one socket write), not one batch waited for whole before the next.
      const window = readsInFlight(READS_IN_FLIGHT, listed.bytes, this.#reads.maxPayload);
      const inFlight: { readonly key: string; readonly read: Promise<DirectMessage | null> }[] = [];
      let next = 0;
      while (next < listed.subjects.length || inFlight.length > 0) {
        const topUp = inFlight.length <= window / 2;
        while (topUp && next < listed.subjects.length && inFlight.length < window) {
          const subject = listed.subjects[next++] as string;
          const read = this.#reads.last(subject);
          // A reload that fails early must not leave its other reads' failures unhandled.
          read.catch(() => {});
          inFlight.push({ key: subject.slice(subjectPrefix.length), read });
        }
        const { key, read } = inFlight.shift() as (typeof inFlight)[number];
        const message = await read;
        if (message === null) continue;
        const live = message.header("KV-Operation") === undefined && keptKey(key);
        this.#put(building, key, { seq: message.seq, raw: live ? new Uint8Array(message.data) : null });
        if (live && key.startsWith("e.") && this.#unparsed.size < WARM_KEPT) this.#unparsed.add(key);
      }
      // Every write after the listing must have been seen (or be awaited), none skipped for good.
      finished = true;
      if (!this.#sequence.finishReading(listed.lastSeq)) return;
      this.#slots = building;
      this.#counts.fill({ seq: 0, keys: 0 });
      if (this.#sequence.contiguous) {
        const at = this.#sequence.lastSeen;
        this.#counts[at % COUNTS_KEPT] = { seq: at, keys: building.size };
      }
      this.#stats.reloads++;
    } finally {
      if (!finished) this.#sequence.abortReading();
      this.#building = null;
    }
  }
}

/** The entry of a slot, parsed once (null: no live entry there, or not one). */
function parsedEntry(key: string, slot: Slot): ActiveDecisionV1 | null {
  if (slot.raw === null) return null;
  if (slot.parsed === undefined) {
    slot.parsed = takeWrittenEntry(key, slot.seq) ?? parseEntryBytes(slot.raw, slot.seq, key);
    // Parsed, the bytes are no longer needed: only that the key is live.
    slot.raw = PARSED;
  }
  return slot.parsed;
}

/** The bytes of a live key once parsed (the parsed value is kept instead). */
const PARSED = new Uint8Array(0);

/** Whether the mirror keeps a key's bytes: entries and host records, not claims or reports. */
function keptKey(key: string): boolean {
  return key.startsWith("e.") || key.startsWith("h.");
}

async function* entriesOf(
  slots: Map<string, Slot>,
  keys: readonly string[],
): AsyncIterable<ActiveDecisionV1> {
  for await (const run of entryRunsOf(slots, keys)) yield* run;
}

async function* entryRunsOf(
  slots: Map<string, Slot>,
  keys: readonly string[],
): AsyncIterable<readonly ActiveDecisionV1[]> {
  for (let from = 0; from < keys.length; from += YIELD_EVERY) {
    if (from > 0) await new Promise<void>((resolve) => setImmediate(resolve));
    const run: ActiveDecisionV1[] = [];
    const to = Math.min(from + YIELD_EVERY, keys.length);
    for (let at = from; at < to; at++) {
      const key = keys[at]!;
      const slot = slots.get(key);
      if (slot === undefined || !key.startsWith("e.")) continue;
      const entry = parsedEntry(key, slot);
      if (entry !== null) run.push(entry);
    }
    yield run;
  }
}
