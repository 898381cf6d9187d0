import { createHash } from "node:crypto";
import { ActiveDecisionV1, HostRecordV1, resourceNames, ScanReportV1 } from "@arbiter/protocol";
import {
  JetStreamApiCodes,
  JetStreamApiError,
  type JetStreamManager,
  jetstream,
  jetstreamManager,
} from "@nats-io/jetstream";
import { type KV, Kvm } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/nats-core";
import { z } from "zod";
import { AckMux } from "./ack-mux.js";
import { DirectGetMux, type DirectMessage, readsInFlight } from "./direct-get.js";
import { isStoreUnavailableError, StoreUnavailableError } from "./errors.js";
import { whilePlacing } from "./placement-retry.js";
import { errorText, parseJsonOrNull } from "./text.js";

/** Where one cached decision sits: the requesting host and its cache key, in a lattice. */
export interface ActiveEntryId {
  readonly lattice: string;
  readonly host: string;
  readonly cacheKey: string;
}

/**
 * The active-decision index: what each host has cached, one entry per (lattice, host, cache key),
 * a projection of the decision log. Request ids are claimed by one entry each, so a request id
 * seen first for one entry never names another.
 */
export interface ActiveIndex {
  /** The entry of `id`, or null when there is none. Throws StoreUnavailableError. */
  get(id: ActiveEntryId): Promise<ActiveDecisionV1 | null>;
  /** Stores `entry` under its (lattice, host, cacheKey), replacing what was there. */
  put(entry: ActiveDecisionV1): Promise<void>;
  /**
   * Stores `entry` in place of `previous` (an entry this index or a mirror of it gave), only when
   * its key still holds `previous`: false when anything was written there since (a newer request
   * of the host, its prune), which then stays.
   */
  replace(entry: ActiveDecisionV1, previous: ActiveDecisionV1): Promise<boolean>;
  /** Removes the entry of `id` (nothing when there is none). */
  delete(id: ActiveEntryId): Promise<void>;
  /**
   * Claims `requestId` for the decision `claimant` (its entry and its id): true when it was
   * unclaimed (now claimed) or already claimed by that very decision; false when another decision
   * holds it, of another entry or of this one (a host sends each request id once: a second
   * decision under it is a copy). Claims are never released.
   */
  claimRequestId(requestId: string, claimant: RequestIdClaimant): Promise<boolean>;
  /** Every entry, or those of one host in one lattice, in no particular order. */
  entries(filter?: { readonly lattice: string; readonly host: string }): AsyncIterable<ActiveDecisionV1>;
  /** Stores the report of a revision's completed re-evaluation (key `s.<revision>`), replacing one there. */
  putScanReport(report: ScanReportV1): Promise<void>;
  /**
   * The report of `revision`'s re-evaluation, or null while there is none (or what is there does
   * not parse as a {@link ScanReportV1} of that revision). Throws StoreUnavailableError.
   */
  readScanReport(revision: number): Promise<ScanReportV1 | null>;
  /** The lifecycle record of a host (key `h.<hash(lattice, host)>`) and its revision, or null. */
  getHost(lattice: string, host: string): Promise<StoredHostRecord | null>;
  /**
   * Writes a host's record when the stored one is still at `revision` (null: when there is none),
   * so that two workers reaping or hearing the same host never lose each other's write. False on
   * a conflict (read again and decide again).
   */
  putHost(record: HostRecordV1, revision: number | null): Promise<boolean>;
  /** Removes a host's record when still at `revision`; false on a conflict. */
  deleteHost(lattice: string, host: string, revision: number): Promise<boolean>;
  /** Every host record, in no particular order. */
  hosts(): AsyncIterable<StoredHostRecord>;
  /** The keys ({@link activeEntryKey}) of every entry now, sorted (a host's entries side by side). */
  keys(): Promise<string[]>;
  /** The entries stored under `keys`, in that order; a key with no entry is left out. */
  entriesOf(keys: readonly string[]): AsyncIterable<ActiveDecisionV1>;
  close(): Promise<void>;
}

/** The decision a request id is claimed for: its entry and its decision id. */
export interface RequestIdClaimant extends ActiveEntryId {
  readonly decisionId: string;
}

/**
 * Whether the claim `held` (a claim's stored text) is that of `claimant`: `<entry key> <decision
 * id>`, or the entry key alone as an earlier release wrote it (which named no decision).
 */
function isClaimOf(held: string, claimant: RequestIdClaimant): boolean {
  const owner = activeEntryKey(claimant);
  return held === owner || held === claimText(claimant);
}

function claimText(claimant: RequestIdClaimant): string {
  return `${activeEntryKey(claimant)} ${claimant.decisionId}`;
}

/** A host's lifecycle record as stored, with the KV revision it was read at. */
export interface StoredHostRecord {
  readonly record: HostRecordV1;
  readonly revision: number;
}

function digest(text: string): string {
  return createHash("sha256").update(text).digest("base64url");
}

/**
 * The KV key of an entry: `e.<hash of lattice and host>.<hash of cache key>` (SHA-256, base64url),
 * so that any host key or cache key makes a valid key, and a host's entries share a prefix.
 */
export function activeEntryKey(id: ActiveEntryId): string {
  let key = entryKeys.get(id);
  if (key === undefined) {
    key = `${hostKeyPrefix(id.lattice, id.host)}.${digest(id.cacheKey)}`;
    entryKeys.set(id, key);
  }
  return key;
}

/** Keys of entries already hashed: a re-evaluation asks for each changed entry's key several times. */
const entryKeys = new WeakMap<ActiveEntryId, string>();

/**
 * The bucket sequence each entry read from the bucket (or a mirror of it) was stored at, so that
 * {@link ActiveIndex.replace} writes only over that very message.
 */
const readAt = new WeakMap<ActiveDecisionV1, number>();

/**
 * Entries this process wrote, by key, with the sequence the bucket stored each at: a mirror that
 * hears that very write takes the object instead of parsing its bytes again.
 */
const written = new Map<string, { readonly seq: number; readonly entry: ActiveDecisionV1 }>();
const WRITTEN_KEPT = 65_536;
/**
 * The most bytes (as written) of the entries kept: a host chooses how large its requests are, and
 * entries no mirror takes (none open, or the bucket too large for one) are held until the map is
 * cleared; 65,536 of a megabyte each were more than a worker's heap.
 */
const WRITTEN_KEPT_BYTES = 64 * 1024 * 1024;
let writtenBytes = 0;

/**
 * Keeps `entry`, written under `key` as `bytes` bytes at bucket sequence `seq`, for a mirror that
 * hears that write ({@link takeWrittenEntry}); the kept entries are let go once too many or too large.
 */
export function noteWritten(key: string, seq: number, entry: ActiveDecisionV1, bytes: number): void {
  if (written.size >= WRITTEN_KEPT || writtenBytes + bytes > WRITTEN_KEPT_BYTES) {
    written.clear();
    writtenBytes = 0;
  }
  if (bytes > WRITTEN_KEPT_BYTES) return;
  written.set(key, { seq, entry });
  writtenBytes += bytes;
}

/** The entry this process wrote under `key` at bucket sequence `seq`, if it did (taken once). */
export function takeWrittenEntry(key: string, seq: number): ActiveDecisionV1 | undefined {
  const held = written.get(key);
  if (held?.seq !== seq) return undefined;
  written.delete(key);
  readAt.set(held.entry, seq);
  entryKeys.set(held.entry, key);
  return held.entry;
}

/** Hosts whose key prefix is kept, so that a scan hashes each host once, not once per entry. */
const HOST_PREFIXES_KEPT = 4096;
/** Longer (lattice, host) texts are hashed each time: whoever chooses them must not fill memory. */
const HOST_PREFIX_ID_KEPT_CHARS = 256;
/**
 * The hashed (lattice, host) keys kept, for the entries' prefix (`e.`) and the host records (`h.`),
 * by lattice and then host: finding one builds no text.
 */
const hostDigests = {
  e: { byLattice: new Map<string, Map<string, string>>(), size: 0 },
  h: { byLattice: new Map<string, Map<string, string>>(), size: 0 },
};

/** `<kind>.<hash of lattice and host>`, hashed once per host while few enough are kept. */
function hostKey(kind: keyof typeof hostDigests, lattice: string, host: string): string {
  const kept = hostDigests[kind];
  const known = kept.byLattice.get(lattice)?.get(host);
  if (known !== undefined) return known;
  const id = JSON.stringify([lattice, host]);
  const key = `${kind}.${digest(id)}`;
  if (id.length > HOST_PREFIX_ID_KEPT_CHARS) return key;
  if (kept.size >= HOST_PREFIXES_KEPT) {
    kept.byLattice.clear();
    kept.size = 0;
  }
  let ofLattice = kept.byLattice.get(lattice);
  if (ofLattice === undefined) {
    ofLattice = new Map();
    kept.byLattice.set(lattice, ofLattice);
  }
  ofLattice.set(host, key);
  kept.size++;
  return key;
}

function hostKeyPrefix(lattice: string, host: string): string {
  return hostKey("e", lattice, host);
}

/** The KV key of a host's lifecycle record: `h.<hash of lattice and host>`. */
export function hostRecordKey(lattice: string, host: string): string {
  return hostKey("h", lattice, host);
}

function requestIdKey(requestId: string): string {
  return `r.${digest(requestId)}`;
}

function scanReportKey(revision: number): string {
  return `s.${revision}`;
}

/** The report stored for `revision`, when `text` is one. */
function parseScanReport(text: string | null, revision: number): ScanReportV1 | null {
  const parsed = ScanReportV1.safeParse(text === null ? null : parseJsonOrNull(text));
  return parsed.success && parsed.data.revision === revision ? parsed.data : null;
}

/** An in-memory {@link ActiveIndex} for unit tests, with the JetStream one's behaviour. */
export function createMemoryActiveIndex(): ActiveIndex {
  const entries = new Map<string, string>();
  const claims = new Map<string, string>();
  const reports = new Map<string, string>();
  const hosts = new Map<string, StoredHostRecord>();
  let revisions = 0;
  return {
    get: async (id) => {
      const text = entries.get(activeEntryKey(id));
      return text === undefined ? null : ActiveDecisionV1.parse(JSON.parse(text));
    },
    put: async (entry) => {
      entries.set(activeEntryKey(entry), JSON.stringify(ActiveDecisionV1.parse(entry)));
    },
    replace: async (entry, previous) => {
      const key = activeEntryKey(entry);
      if (entries.get(key) !== JSON.stringify(ActiveDecisionV1.parse(previous))) return false;
      entries.set(key, JSON.stringify(ActiveDecisionV1.parse(entry)));
      return true;
    },
    delete: async (id) => {
      entries.delete(activeEntryKey(id));
    },
    claimRequestId: async (requestId, claimant) => {
      const key = requestIdKey(requestId);
      const held = claims.get(key);
      if (held === undefined) claims.set(key, claimText(claimant));
      return held === undefined || isClaimOf(held, claimant);
    },
    entries: async function* (filter) {
      const prefix = filter === undefined ? "e." : `${hostKeyPrefix(filter.lattice, filter.host)}.`;
      for (const [key, text] of [...entries]) {
        if (key.startsWith(prefix)) yield ActiveDecisionV1.parse(JSON.parse(text));
      }
    },
    putScanReport: async (report) => {
      reports.set(scanReportKey(report.revision), JSON.stringify(ScanReportV1.parse(report)));
    },
    readScanReport: async (revision) =>
      parseScanReport(reports.get(scanReportKey(revision)) ?? null, revision),
    getHost: async (lattice, host) => hosts.get(hostRecordKey(lattice, host)) ?? null,
    putHost: async (record, revision) => {
      const key = hostRecordKey(record.lattice, record.host);
      if ((hosts.get(key)?.revision ?? null) !== revision) return false;
      hosts.set(key, { record: HostRecordV1.parse(record), revision: ++revisions });
      return true;
    },
    deleteHost: async (lattice, host, revision) => {
      const key = hostRecordKey(lattice, host);
      if (hosts.get(key)?.revision !== revision) return false;
      hosts.delete(key);
      return true;
    },
    hosts: async function* () {
      yield* [...hosts.values()];
    },
    keys: async () => [...entries.keys()].sort(),
    entriesOf: async function* (keys) {
      for (const key of keys) {
        const text = entries.get(key);
        if (text !== undefined) yield ActiveDecisionV1.parse(JSON.parse(text));
      }
    },
    close: async () => {},
  };
}

/**
 * The active bucket's options: one value per key, and every write republished onto
 * `<prefix>.active.>` for the workers' mirrors (see `openIndexMirror`).
 */
export function activeBucketOptions(prefix: string, replicas: number) {
  const names = resourceNames(prefix);
  return {
    replicas,
    history: 1,
    republish: { src: `$KV.${names.activeBucket}.>`, dest: names.activeRepublishSubjects },
  };
}

/**
 * Adds the republish of {@link activeBucketOptions} to an active bucket made without it (by an
 * earlier release). nats-server 2.9 cannot change a stream's republish: there the bucket stays as
 * it is, and re-evaluations read it from the server (the workers say so).
 */
export async function ensureActiveRepublish(jsm: JetStreamManager, prefix: string): Promise<void> {
  const names = resourceNames(prefix);
  const stream = `KV_${names.activeBucket}`;
  const info = await jsm.streams.info(stream);
  if (info.config.republish !== undefined) return;
  const { republish } = activeBucketOptions(prefix, info.config.num_replicas);
  await jsm.streams.update(stream, { ...info.config, republish }).catch(() => {});
}

/** Options for {@link openJetStreamActiveIndex}. */
export const ActiveIndexOptions = z.object({
  prefix: z
    .string()
    .regex(/^[A-Za-z0-9_-]+$/)
    .default("arbiter"),
  replicas: z.number().int().min(1).max(5).default(1),
  /** Create the bucket when it is missing (idempotent); workers only open the one an admin made. */
  create: z.boolean().default(true),
  /** Longest wait for one read or write of the bucket. */
  timeoutMs: z.number().int().positive().default(10_000),
});
export type ActiveIndexOptions = z.input<typeof ActiveIndexOptions>;

/**
 * Opens (by default creating) the active index in the KV bucket `<prefix>-active` on a connection
 * the caller owns. Throws StoreUnavailableError when the bucket cannot be opened.
 */
export async function openJetStreamActiveIndex(
  nc: NatsConnection,
  options: ActiveIndexOptions = {},
): Promise<ActiveIndex> {
  const config = ActiveIndexOptions.parse(options);
  const name = resourceNames(config.prefix).activeBucket;
  const kvm = new Kvm(jetstream(nc));
  let kv: KV;
  let jsm: JetStreamManager;
  try {
    kv = config.create
      ? await whilePlacing(() => kvm.create(name, activeBucketOptions(config.prefix, config.replicas)))
      : await kvm.open(name);
    jsm = await jetstreamManager(nc);
  } catch (err) {
    throw new StoreUnavailableError(`cannot open the ${name} bucket: ${errorText(err)}`, { cause: err });
  }
  const stream = `KV_${name}`;
  return new KvActiveIndex(kv, jsm, name, {
    writes: new AckMux(nc, stream, config.timeoutMs),
    reads: new DirectGetMux(nc, stream, config.timeoutMs),
  });
}

/** Reads of a listing in flight at once: enough to keep the server busy, bounded in memory. */
const READS_IN_FLIGHT = 512;

class KvActiveIndex implements ActiveIndex {
  readonly #kv: KV;
  readonly #jsm: JetStreamManager;
  readonly #bucket: string;
  readonly #writes: AckMux;
  readonly #reads: DirectGetMux;

  constructor(
    kv: KV,
    jsm: JetStreamManager,
    bucket: string,
    io: { readonly writes: AckMux; readonly reads: DirectGetMux },
  ) {
    this.#kv = kv;
    this.#jsm = jsm;
    this.#bucket = bucket;
    this.#writes = io.writes;
    this.#reads = io.reads;
  }

  async get(id: ActiveEntryId): Promise<ActiveDecisionV1 | null> {
    return this.#read(activeEntryKey(id));
  }

  async #read(key: string): Promise<ActiveDecisionV1 | null> {
    return parseEntryMessage(await this.#readDirect(`$KV.${this.#bucket}.${key}`));
  }

  async put(entry: ActiveDecisionV1): Promise<void> {
    const key = activeEntryKey(entry);
    try {
      const text = JSON.stringify(entry);
      const { seq } = await this.#writes.publish(`$KV.${this.#bucket}.${key}`, text, null);
      noteWritten(key, seq, entry, text.length);
    } catch (err) {
      throw new StoreUnavailableError(`cannot write the active index: ${errorText(err)}`, { cause: err });
    }
  }

  async replace(entry: ActiveDecisionV1, previous: ActiveDecisionV1): Promise<boolean> {
    const seq = readAt.get(previous);
    if (seq === undefined) {
      await this.put(entry);
      return true;
    }
    const key = activeEntryKey(entry);
    try {
      const text = JSON.stringify(entry);
      const stored = await this.#writes.publish(`$KV.${this.#bucket}.${key}`, text, null, {
        "Nats-Expected-Last-Subject-Sequence": String(seq),
      });
      noteWritten(key, stored.seq, entry, text.length);
      return true;
    } catch (err) {
      if (isStoreUnavailableError(err) && err.jsErrCode === WRONG_LAST_SEQUENCE) return false;
      throw new StoreUnavailableError(`cannot write the active index: ${errorText(err)}`, { cause: err });
    }
  }

  async delete(id: ActiveEntryId): Promise<void> {
    try {
      await this.#kv.delete(activeEntryKey(id));
    } catch (err) {
      throw new StoreUnavailableError(`cannot write the active index: ${errorText(err)}`, { cause: err });
    }
  }

  async claimRequestId(requestId: string, claimant: RequestIdClaimant): Promise<boolean> {
    const key = requestIdKey(requestId);
    try {
      await this.#writes.publish(`$KV.${this.#bucket}.${key}`, claimText(claimant), null, {
        "Nats-Expected-Last-Subject-Sequence": "0",
      });
      return true;
    } catch (err) {
      if (!isStoreUnavailableError(err) || err.jsErrCode !== WRONG_LAST_SEQUENCE) {
        throw new StoreUnavailableError(`cannot write the active index: ${errorText(err)}`, { cause: err });
      }
    }
    const held = await this.#readDirect(`$KV.${this.#bucket}.${key}`);
    return (
      held !== null && held.header("KV-Operation") === undefined && isClaimOf(textOf(held.data), claimant)
    );
  }

  async getHost(lattice: string, host: string): Promise<StoredHostRecord | null> {
    return this.#readHost(hostRecordKey(lattice, host));
  }

  async #readHost(key: string): Promise<StoredHostRecord | null> {
    const message = await this.#readDirect(`$KV.${this.#bucket}.${key}`);
    if (message === null || message.header("KV-Operation") !== undefined) return null;
    const record = parseHostRecord(message.data);
    return record === null ? null : { record, revision: message.seq };
  }

  async putHost(record: HostRecordV1, revision: number | null): Promise<boolean> {
    const key = hostRecordKey(record.lattice, record.host);
    const text = JSON.stringify(record);
    try {
      if (revision === null) await this.#kv.create(key, text);
      else await this.#kv.update(key, text, revision);
      return true;
    } catch (err) {
      if (isWrongLastSequence(err)) return false;
      throw new StoreUnavailableError(`cannot write the active index: ${errorText(err)}`, { cause: err });
    }
  }

  async deleteHost(lattice: string, host: string, revision: number): Promise<boolean> {
    try {
      await this.#kv.delete(hostRecordKey(lattice, host), { previousSeq: revision });
      return true;
    } catch (err) {
      if (isWrongLastSequence(err)) return false;
      throw new StoreUnavailableError(`cannot write the active index: ${errorText(err)}`, { cause: err });
    }
  }

  async *hosts(): AsyncIterable<StoredHostRecord> {
    const keys = await this.#keys("h.>");
    for (let at = 0; at < keys.length; at += 64) {
      const read = await Promise.all(keys.slice(at, at + 64).map((key) => this.#readHost(key)));
      for (const record of read) if (record !== null) yield record;
    }
  }

  /** Keys matching `pattern`, from the stream's subject list (see `entries`). */
  async #keys(pattern: string): Promise<string[]> {
    try {
      const subjectPrefix = `$KV.${this.#bucket}.`;
      const info = await this.#jsm.streams.info(`KV_${this.#bucket}`, {
        subjects_filter: `${subjectPrefix}${pattern}`,
      });
      return Object.keys(info.state.subjects ?? {}).map((subject) => subject.slice(subjectPrefix.length));
    } catch (err) {
      throw new StoreUnavailableError(`cannot list the active index: ${errorText(err)}`, { cause: err });
    }
  }

  async *entries(filter?: {
    readonly lattice: string;
    readonly host: string;
  }): AsyncIterable<ActiveDecisionV1> {
    const pattern = filter === undefined ? "e.>" : `${hostKeyPrefix(filter.lattice, filter.host)}.>`;
    yield* this.entriesOf(await this.#list(pattern));
  }

  async keys(): Promise<string[]> {
    return (await this.#list("e.>")).sort();
  }

  /** The bytes the bucket's stream holds now. */
  async #storedBytes(): Promise<number> {
    try {
      return (await this.#jsm.streams.info(`KV_${this.#bucket}`)).state.bytes;
    } catch (err) {
      throw new StoreUnavailableError(`cannot read the active index: ${errorText(err)}`, { cause: err });
    }
  }

  async #list(pattern: string): Promise<string[]> {
    try {
      // The stream's subject list, not `kv.keys()`: that makes a consumer, which workers may not
      // (a consumer can deliver the bucket's bytes onto any subject of the account).
      const subjectPrefix = `$KV.${this.#bucket}.`;
      const info = await this.#jsm.streams.info(`KV_${this.#bucket}`, {
        subjects_filter: `${subjectPrefix}${pattern}`,
      });
      return Object.keys(info.state.subjects ?? {}).map((subject) => subject.slice(subjectPrefix.length));
    } catch (err) {
      throw new StoreUnavailableError(`cannot list the active index: ${errorText(err)}`, { cause: err });
    }
  }

  async *entriesOf(keys: readonly string[]): AsyncIterable<ActiveDecisionV1> {
    // Reads are pipelined through one inbox, a window of them in flight: one round trip per
    // entry, one after the other, is what makes a scan slow.
    // Each answer is parsed only when its turn comes: hundreds of parsed entries waiting in the
    // window would be copied by every young-generation collection meanwhile.
    const subjectPrefix = `$KV.${this.#bucket}.`;
    const inFlight: Promise<DirectMessage | null>[] = [];
    let next = 0;
    const window = readsInFlight(READS_IN_FLIGHT, await this.#storedBytes(), this.#reads.maxPayload);
    while (next < keys.length || inFlight.length > 0) {
      // Topped up in batches once half are answered, not one read per answer: the reads of a
      // batch leave in one socket write.
      const topUp = inFlight.length <= window / 2;
      while (topUp && next < keys.length && inFlight.length < window) {
        const read = this.#readDirect(`${subjectPrefix}${keys[next++]}`);
        // A listing left early (a stopping scan) must not leave its reads' failures unhandled.
        read.catch(() => {});
        inFlight.push(read);
      }
      const message = await inFlight.shift();
      const entry = message === undefined ? null : parseEntryMessage(message);
      if (entry !== null) yield entry;
    }
  }

  async putScanReport(report: ScanReportV1): Promise<void> {
    const text = JSON.stringify(ScanReportV1.parse(report));
    try {
      await this.#kv.put(scanReportKey(report.revision), text);
    } catch (err) {
      throw new StoreUnavailableError(`cannot write the active index: ${errorText(err)}`, { cause: err });
    }
  }

  async readScanReport(revision: number): Promise<ScanReportV1 | null> {
    try {
      const entry = await this.#kv.get(scanReportKey(revision));
      if (entry === null || entry.operation !== "PUT") return null;
      return parseScanReport(entry.string(), revision);
    } catch (err) {
      throw new StoreUnavailableError(`cannot read the active index: ${errorText(err)}`, { cause: err });
    }
  }

  async #readDirect(subject: string): Promise<DirectMessage | null> {
    try {
      return await this.#reads.last(subject);
    } catch (err) {
      throw new StoreUnavailableError(`cannot read the active index: ${errorText(err)}`, { cause: err });
    }
  }

  async close(): Promise<void> {
    this.#writes.close();
    this.#reads.close();
  }
}

/** The entry a direct get answered: none for a deleted key or what does not parse as one. */
function parseEntryMessage(message: DirectMessage | null): ActiveDecisionV1 | null {
  if (message === null || message.header("KV-Operation") !== undefined) return null;
  return parseEntryBytes(message.data, message.seq);
}

/**
 * An entry's stored bytes, read at bucket sequence `seq` (under `key`, when the caller knows it);
 * null when they are not an entry.
 */
export function parseEntryBytes(data: Uint8Array, seq: number, key?: string): ActiveDecisionV1 | null {
  const parsed = ActiveDecisionV1.safeParse(parseJsonOrNull(textOf(data)));
  if (!parsed.success) return null;
  readAt.set(parsed.data, seq);
  if (key !== undefined) entryKeys.set(parsed.data, key);
  return parsed.data;
}

/** A host record's stored bytes; null when they are not one. */
export function parseHostRecord(data: Uint8Array): HostRecordV1 | null {
  const parsed = HostRecordV1.safeParse(parseJsonOrNull(textOf(data)));
  return parsed.success ? parsed.data : null;
}

function textOf(data: Uint8Array): string {
  return Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString("utf8");
}

/** JetStream's err_code for a write whose expected last sequence no longer holds. */
const WRONG_LAST_SEQUENCE = 10071;

/** JetStream's "wrong last sequence": a create or update that lost to another writer. */
function isWrongLastSequence(err: unknown): boolean {
  return err instanceof JetStreamApiError && err.code === JetStreamApiCodes.StreamWrongLastSequence;
}
