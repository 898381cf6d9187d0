import { createHash } from "node:crypto";
import { RevocationBatchV1, RevocationV1, resourceNames } from "@arbiter/protocol";
import {
  DeliverPolicy,
  type JetStreamClient,
  jetstream,
  type OrderedConsumerOptions,
} from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import { z } from "zod";
import { AckMux } from "./ack-mux.js";
import { batchRuns, maxMessageBodyBytes } from "./decision-batch.js";
import { StoreUnavailableError } from "./errors.js";
import { orderedConsumer, orderedMessages } from "./ordered-read.js";
import { errorText, parseJsonOrNull } from "./text.js";

/** A stored revocation record and the sequence of the message holding it in the revocation log. */
export interface StoredRevocation {
  readonly seq: number;
  readonly record: RevocationV1;
}

/** Which revocation records to read. */
export interface RevocationFilter {
  /** Only the records of this host key. */
  readonly host?: string;
  /** Only records stored at or after this time. */
  readonly since?: Date;
  /** Keep following new records instead of stopping at the end. */
  readonly follow?: boolean;
  readonly signal?: AbortSignal;
}

/** A revocation record to append, and the id it is de-duplicated on. */
export interface RevocationEntry {
  readonly record: RevocationV1;
  readonly id: string;
  /**
   * The record's JSON text, when the caller has it already: exactly `JSON.stringify(record)` (the
   * in-memory log refuses any other), written instead of serializing the record again.
   */
  readonly text?: string;
}

/** One message {@link RevocationLog.appendBatch} wrote: where, how many records, and whether it was there already. */
export interface AppendedRevocations {
  readonly seq: number;
  readonly records: number;
  readonly duplicate: boolean;
}

/** The revocation log: a record of every override Arbiter published, in order. */
export interface RevocationLog {
  /**
   * Appends `record` alone in a message de-duplicated on `id` (the same id within the log's
   * duplicate window is stored once). Throws StoreUnavailableError when the log does not acknowledge.
   */
  append(record: RevocationV1, id: string): Promise<{ seq: number; duplicate: boolean }>;
  /**
   * Appends the records in order, in as few RevocationBatchV1 messages as the server's
   * max_payload allows; each message is de-duplicated on an id made of the ids of the records it
   * holds (its one record's id for a message of one), so the same batch written again (a scan
   * done again) is stored once. Resolves once every message is acknowledged. Throws
   * StoreUnavailableError, before writing any, when a record cannot fit a message on its own, and
   * when a message is not acknowledged.
   */
  appendBatch(entries: readonly RevocationEntry[]): Promise<AppendedRevocations[]>;
  /**
   * Records in log order: each record of a batch message, in its order, and single-record
   * messages; a stored message or batch element that is not a RevocationV1 is skipped.
   */
  read(filter?: RevocationFilter): AsyncIterable<StoredRevocation>;
}

/** The bytes a batch message adds around its records' texts: `{"revocations":[` and `]}`. */
const BATCH_FRAME_BYTES = '{"revocations":[]}'.length;

/** A message of revocation records ready to publish: a RevocationBatchV1's text. */
interface RevocationMessage {
  readonly body: string;
  readonly id: string;
  readonly records: number;
}

/**
 * The messages that hold `entries` in order on a server whose max_payload is `maxPayload`, each
 * as full as it can be. Throws StoreUnavailableError for a record no message can hold.
 */
function revocationMessages(
  entries: readonly RevocationEntry[],
  maxPayload: number | undefined,
): RevocationMessage[] {
  if (entries.length === 0) return [];
  const limit = maxMessageBodyBytes(maxPayload);
  const texts = entries.map((e) => e.text ?? JSON.stringify(e.record));
  // A chunk of a scan is far below max_payload: one text, measured once, is the common case.
  const whole = `{"revocations":[${texts.join(",")}]}`;
  if (Buffer.byteLength(whole) <= limit) {
    return [{ body: whole, id: batchMessageId(entries, 0, entries.length), records: entries.length }];
  }
  const sizes = texts.map((t) => Buffer.byteLength(t) + 1);
  const recordLimit = limit - BATCH_FRAME_BYTES;
  for (const [i, size] of sizes.entries()) {
    if (size - 1 > recordLimit) {
      const requestId = JSON.stringify(entries[i]!.record.requestId.slice(0, 100));
      throw new StoreUnavailableError(
        `the revocation record of request ${requestId} is ${size - 1} bytes, more than one message ` +
          `can hold (${recordLimit} bytes under max_payload ${maxPayload ?? "unknown"}); nothing of its batch was written`,
      );
    }
  }
  return batchRuns(sizes, recordLimit).map(([from, to]) => ({
    body: `{"revocations":[${texts.slice(from, to).join(",")}]}`,
    id: batchMessageId(entries, from, to),
    records: to - from,
  }));
}

/** A message's id: its one record's id, or a digest of all of its records' ids, in order. */
function batchMessageId(entries: readonly RevocationEntry[], from: number, to: number): string {
  if (to - from === 1) return entries[from]!.id;
  const ids = entries.slice(from, to).map((e) => e.id);
  return `batch:${createHash("sha256").update(JSON.stringify(ids)).digest("base64url")}`;
}

/**
 * What a reader takes a batch message for: its elements are judged one by one, so one that is
 * not a RevocationV1 costs only itself (RevocationBatchV1 is what writers write).
 */
const StoredRevocationBatch = z.object({ revocations: z.array(z.unknown()).min(1) });

/** The revocation records of one stored message's text, in order: a batch's or a single one. */
function recordsOf(text: string): RevocationV1[] {
  const value = parseJsonOrNull(text);
  if (typeof value === "object" && value !== null && "revocations" in value) {
    const batch = StoredRevocationBatch.safeParse(value);
    if (!batch.success) return [];
    const records: RevocationV1[] = [];
    for (const element of batch.data.revocations) {
      const record = RevocationV1.safeParse(element);
      if (record.success) records.push(record.data);
    }
    return records;
  }
  const record = RevocationV1.safeParse(value);
  return record.success ? [record.data] : [];
}

function matches(record: RevocationV1, filter: RevocationFilter): boolean {
  return filter.host === undefined || record.host === filter.host;
}

/** The in-memory {@link RevocationLog}, and a way to store any text in it as a message. */
export interface MemoryRevocationLog extends RevocationLog {
  /** Stores `text` as one message, as anyone who may publish on the log's subject can. */
  storeRaw(text: string): void;
}

/**
 * An in-memory {@link RevocationLog} for unit tests, splitting batches as a server whose
 * max_payload is `maxPayload` (default NATS's 1 MiB) would need, and refusing a message over it.
 */
export function createMemoryRevocationLog(
  options: { readonly maxPayload?: number } = {},
): MemoryRevocationLog {
  const stored: { seq: number; at: Date; text: string; id: string | null }[] = [];
  const store = (text: string, id: string | null): { seq: number; duplicate: boolean } => {
    const earlier = id === null ? undefined : stored.find((s) => s.id === id);
    if (earlier !== undefined) return { seq: earlier.seq, duplicate: true };
    if (Buffer.byteLength(text) > maxMessageBodyBytes(options.maxPayload)) {
      throw new StoreUnavailableError("the revocation log did not acknowledge: maximum payload exceeded");
    }
    const seq = stored.length + 1;
    stored.push({ seq, at: new Date(), text, id });
    return { seq, duplicate: false };
  };
  return {
    append: async (record, id) => store(JSON.stringify(RevocationV1.parse(record)), id),
    appendBatch: async (entries) => {
      for (const e of entries) {
        if (e.text !== undefined && e.text !== JSON.stringify(e.record)) {
          throw new TypeError(`the text given for revocation ${e.id} is not its record's`);
        }
      }
      const messages = revocationMessages(entries, options.maxPayload);
      // What the JetStream log writes, checked here against the schema writers promise.
      for (const m of messages) RevocationBatchV1.parse(JSON.parse(m.body));
      return messages.map((m) => ({ ...store(m.body, m.id), records: m.records }));
    },
    read: async function* (filter = {}) {
      for (const s of [...stored]) {
        if (filter.since !== undefined && s.at < filter.since) continue;
        for (const record of recordsOf(s.text)) {
          if (matches(record, filter)) yield { seq: s.seq, record };
        }
      }
    },
    storeRaw: (text) => {
      store(text, null);
    },
  };
}

/**
 * The revocation log in the stream `<PREFIX>_REVOCATIONS` (created by `openJetStreamStore`), on a
 * connection the caller owns.
 */
export function openJetStreamRevocationLog(
  nc: NatsConnection,
  options: { readonly prefix?: string; readonly ackTimeoutMs?: number } = {},
): RevocationLog {
  const names = resourceNames(options.prefix);
  const timeoutMs = options.ackTimeoutMs ?? 5000;
  const js = jetstream(nc, { timeout: timeoutMs });
  const acks = new AckMux(nc, names.revocationsStream, timeoutMs);
  return new JetStreamRevocationLog(nc, js, acks, names.revocationsStream, names.revocationsSubject);
}

class JetStreamRevocationLog implements RevocationLog {
  readonly #nc: NatsConnection;
  readonly #js: JetStreamClient;
  readonly #acks: AckMux;
  readonly #stream: string;
  readonly #subject: string;

  constructor(nc: NatsConnection, js: JetStreamClient, acks: AckMux, stream: string, subject: string) {
    this.#nc = nc;
    this.#js = js;
    this.#acks = acks;
    this.#stream = stream;
    this.#subject = subject;
  }

  async append(record: RevocationV1, id: string): Promise<{ seq: number; duplicate: boolean }> {
    try {
      // Through one acknowledgement inbox: a scan appends thousands at once. The AckMux checks that
      // each acknowledgement names this stream, as `expect.streamName` did.
      return await this.#acks.publish(this.#subject, JSON.stringify(record), id, {
        "Nats-Expected-Stream": this.#stream,
      });
    } catch (err) {
      throw new StoreUnavailableError(`the revocation log did not acknowledge: ${errorText(err)}`, {
        cause: err,
      });
    }
  }

  async appendBatch(entries: readonly RevocationEntry[]): Promise<AppendedRevocations[]> {
    // Read on every batch: a reconnect may have brought another server's max_payload.
    const messages = revocationMessages(entries, this.#nc.info?.max_payload);
    try {
      return await Promise.all(
        messages.map(async (m) => ({
          ...(await this.#acks.publish(this.#subject, m.body, m.id, {
            "Nats-Expected-Stream": this.#stream,
          })),
          records: m.records,
        })),
      );
    } catch (err) {
      throw new StoreUnavailableError(`the revocation log did not acknowledge: ${errorText(err)}`, {
        cause: err,
      });
    }
  }

  async *read(filter: RevocationFilter = {}): AsyncIterable<StoredRevocation> {
    const options: Partial<OrderedConsumerOptions> = filter.since
      ? { deliver_policy: DeliverPolicy.StartTime, opt_start_time: filter.since.toISOString() }
      : { deliver_policy: DeliverPolicy.All };
    let consumer: Awaited<ReturnType<JetStreamClient["consumers"]["get"]>>;
    try {
      consumer = await orderedConsumer(this.#js, this.#stream, options, filter.signal);
    } catch (err) {
      throw new StoreUnavailableError(`cannot read the revocation log: ${errorText(err)}`, { cause: err });
    }
    for await (const m of orderedMessages(consumer, filter.follow, filter.signal)) {
      for (const record of recordsOf(m.string())) {
        if (matches(record, filter)) yield { seq: m.seq, record };
      }
    }
  }
}
