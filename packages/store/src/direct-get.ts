import type { Msg, NatsConnection } from "@nats-io/nats-core";
import { StoreUnavailableError } from "./errors.js";
import { ReplyMux } from "./reply-mux.js";

/**
 * Most bytes of answers a listing asks for at once: nats-server queues some 64 MB for one
 * connection (`max_pending`) and cuts off a connection past it as a slow consumer, so 512 reads of
 * a host's megabyte entries, in flight together, were not answered in time at any delivery of a scan.
 */
const READ_BYTES_IN_FLIGHT = 16 * 1024 * 1024;

/** The largest message nats-server takes unless configured otherwise (`max_payload`). */
export const DEFAULT_MAX_PAYLOAD = 1024 * 1024;

/**
 * How many reads of a stream holding `streamBytes` may be in flight at once, at most `most`: all
 * of them when the whole stream is no more than {@link READ_BYTES_IN_FLIGHT}, else as many
 * messages of `maxPayload` bytes (the largest the server takes) as that holds. Not sized by the
 * largest message read so far: a host chooses which of its entries an index lists first, and
 * small ones first opened the window to its large ones. Pure.
 */
export function readsInFlight(most: number, streamBytes: number, maxPayload: number): number {
  if (streamBytes <= READ_BYTES_IN_FLIGHT) return most;
  return Math.max(1, Math.min(most, Math.floor(READ_BYTES_IN_FLIGHT / Math.max(1, maxPayload))));
}

/** The last message stored on one subject of a stream, as a direct get returns it. */
export interface DirectMessage {
  readonly seq: number;
  readonly data: Uint8Array;
  header(name: string): string | undefined;
}

/**
 * Reads the last message of a subject with JetStream direct gets (`$JS.API.DIRECT.GET.<stream>`
 * with `last_by_subj`, nats-server 2.9 and later), answers matched through one wildcard inbox
 * subscription (a {@link ReplyMux}). This is what `kv.get` does, without a request object, timer
 * and captured error per read, so that thousands of reads can be in flight at once. Each read gets
 * an unguessable reply token, and an answer counts only when it names the stream and subject asked for.
 */
export class DirectGetMux {
  readonly #stream: string;
  readonly #nc: NatsConnection;
  readonly #replies: ReplyMux<string, DirectMessage | null>;

  constructor(nc: NatsConnection, stream: string, timeoutMs: number) {
    this.#stream = stream;
    this.#nc = nc;
    this.#replies = new ReplyMux(nc, {
      timeoutMs,
      judge: (msg, subject) => this.#judge(msg, subject),
      sendFailed: (err) => `cannot read ${stream}: ${String(err)}`,
      timedOut: `${stream} did not answer within ${timeoutMs} ms`,
      closed: `the reader of ${stream} was closed`,
    });
  }

  /**
   * The last message stored on `subject`, or null when it has none. Rejects with
   * StoreUnavailableError when the stream does not answer, or answers with anything else.
   */
  last(subject: string): Promise<DirectMessage | null> {
    return this.#replies.send(
      `$JS.API.DIRECT.GET.${this.#stream}`,
      JSON.stringify({ last_by_subj: subject }),
      subject,
    );
  }

  /** The largest message the server takes, and so the largest answer of a read. */
  get maxPayload(): number {
    return this.#nc.info?.max_payload ?? DEFAULT_MAX_PAYLOAD;
  }

  /** Stops listening; every read still waiting fails. */
  close(): void {
    this.#replies.close();
  }

  #judge(msg: Msg, subject: string): DirectMessage | null | StoreUnavailableError {
    const h = msg.headers;
    if (h?.code === 404) return null;
    if (h === undefined || (h.code !== 0 && h.code !== 200)) {
      return new StoreUnavailableError(
        `a direct get on ${this.#stream} was answered ${h ? `${h.code} ${h.description}` : "without headers"}`,
      );
    }
    const seq = Number(h.get("Nats-Sequence"));
    if (h.get("Nats-Stream") !== this.#stream || h.get("Nats-Subject") !== subject || !(seq > 0)) {
      return new StoreUnavailableError(`a direct get on ${this.#stream} was answered for another message`);
    }
    return { seq, data: msg.data, header: (name) => h.get(name) || undefined };
  }
}
