import { RevocationV1, resourceNames } from "@arbiter/protocol";
import {
  DeliverPolicy,
  type JetStreamClient,
  type JsMsg,
  jetstream,
  type OrderedConsumerOptions,
} from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import { AckMux } from "./ack-mux.js";
import { StoreUnavailableError } from "./errors.js";
import { orderedMessages } from "./ordered-read.js";
import { errorText, parseJsonOrNull } from "./text.js";

/** A stored revocation record and its sequence in the revocation log. */
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

/** The revocation log: one record per override Arbiter published, in order. */
export interface RevocationLog {
  /**
   * Appends `record` de-duplicated on `id` (the same id within the log's duplicate window is
   * stored once: a re-evaluation done again records nothing twice). Throws StoreUnavailableError
   * when the log does not acknowledge.
   */
  append(record: RevocationV1, id: string): Promise<{ seq: number; duplicate: boolean }>;
  /** Records in log order; a stored message that is not a RevocationV1 is skipped. */
  read(filter?: RevocationFilter): AsyncIterable<StoredRevocation>;
}

function matches(record: RevocationV1, filter: RevocationFilter): boolean {
  return filter.host === undefined || record.host === filter.host;
}

/** An in-memory {@link RevocationLog} for unit tests. */
export function createMemoryRevocationLog(): RevocationLog {
  const stored: { seq: number; at: Date; record: RevocationV1; id: string }[] = [];
  return {
    append: async (record, id) => {
      const earlier = stored.find((s) => s.id === id);
      if (earlier !== undefined) return { seq: earlier.seq, duplicate: true };
      const seq = stored.length + 1;
      stored.push({ seq, at: new Date(), record: RevocationV1.parse(record), id });
      return { seq, duplicate: false };
    },
    read: async function* (filter = {}) {
      for (const s of [...stored]) {
        if (filter.since !== undefined && s.at < filter.since) continue;
        if (matches(s.record, filter)) yield { seq: s.seq, record: s.record };
      }
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
  return new JetStreamRevocationLog(js, acks, names.revocationsStream, names.revocationsSubject);
}

class JetStreamRevocationLog implements RevocationLog {
  readonly #js: JetStreamClient;
  readonly #acks: AckMux;
  readonly #stream: string;
  readonly #subject: string;

  constructor(js: JetStreamClient, acks: AckMux, stream: string, subject: string) {
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

  async *read(filter: RevocationFilter = {}): AsyncIterable<StoredRevocation> {
    const options: Partial<OrderedConsumerOptions> = filter.since
      ? { deliver_policy: DeliverPolicy.StartTime, opt_start_time: filter.since.toISOString() }
      : { deliver_policy: DeliverPolicy.All };
    let consumer: Awaited<ReturnType<JetStreamClient["consumers"]["get"]>>;
    try {
      consumer = await this.#js.consumers.get(this.#stream, options);
    } catch (err) {
      throw new StoreUnavailableError(`cannot read the revocation log: ${errorText(err)}`, { cause: err });
    }
    for await (const m of orderedMessages(consumer, filter.follow, filter.signal)) {
      const stored = parsed(m);
      if (stored !== null && matches(stored.record, filter)) yield stored;
    }
  }
}

function parsed(m: JsMsg): StoredRevocation | null {
  const record = RevocationV1.safeParse(parseJsonOrNull(m.string()));
  return record.success ? { seq: m.seq, record: record.data } : null;
}
