import { headers, type Msg, type NatsConnection } from "@nats-io/nats-core";
import { z } from "zod";
import { StoreUnavailableError } from "./errors.js";
import { ReplyMux } from "./reply-mux.js";

/**
 * JetStream's answer to a publish. The server sends `error` together with `stream` and `seq: 0`
 * when it refuses a message (a full stream, an exhausted account), so the fields are read
 * together and judged by {@link AckMux}, never matched as alternatives.
 */
const PubAckReply = z.object({
  stream: z.string().optional(),
  seq: z.number().int().optional(),
  duplicate: z.boolean().optional(),
  error: z
    .object({
      code: z.number().optional(),
      err_code: z.number().optional(),
      description: z.string().optional(),
    })
    .optional(),
});

/**
 * Most bytes published and not yet acknowledged: each publish's time runs from when it leaves, and
 * a burst of a host's large entries (a scan's chunk of index writes and records) queued in the
 * client took longer than the timeout to be sent at all.
 */
const PENDING_BYTES = 16 * 1024 * 1024;

/** Where JetStream stored a message, and whether it had it already (a de-duplicated publish). */
interface PubAck {
  readonly seq: number;
  readonly duplicate: boolean;
}

/**
 * Publishes to one JetStream stream and matches acknowledgements through one wildcard inbox
 * subscription (a {@link ReplyMux}). It does what `JetStreamClient.publish` does for a single
 * message, with a fraction of the client CPU (no per-publish request object, timer or error
 * capture), which matters on the decision path where every answer waits for one acknowledgement.
 * Each publish gets an unguessable reply token, and an acknowledgement counts only when it
 * carries no error, names the expected stream and a sequence above 0.
 */
export class AckMux {
  readonly #stream: string;
  readonly #replies: ReplyMux<undefined, PubAck>;

  constructor(nc: NatsConnection, stream: string, timeoutMs: number) {
    this.#stream = stream;
    this.#replies = new ReplyMux(nc, {
      timeoutMs,
      judge: (msg) => this.#judge(msg),
      sendFailed: (err) => `cannot publish: ${String(err)}`,
      timedOut: `no acknowledgement within ${timeoutMs} ms`,
      closed: "the publisher was closed before JetStream acknowledged",
      maxPendingBytes: PENDING_BYTES,
    });
  }

  /**
   * Publishes `data` with `msgId` for de-duplication (none when null: a KV put must never be
   * dropped as a duplicate) and any `extraHeaders`; resolves with the stream sequence once
   * acknowledged. Rejects with `StoreUnavailableError` (its `jsErrCode` set
   * when JetStream refused the message) on a refusal, a bad or missing acknowledgement.
   */
  publish(
    subject: string,
    data: string | Uint8Array,
    msgId: string | null,
    extraHeaders: Readonly<Record<string, string>> = {},
  ): Promise<PubAck> {
    const hdrs = headers();
    if (msgId !== null) hdrs.set("Nats-Msg-Id", msgId);
    for (const [key, value] of Object.entries(extraHeaders)) hdrs.set(key, value);
    return this.#replies.send(subject, data, undefined, hdrs);
  }

  /** Stops listening; every publish still waiting fails. */
  close(): void {
    this.#replies.close();
  }

  /** What an acknowledgement says: where the message was stored, or why it does not count. */
  #judge(msg: Msg): PubAck | StoreUnavailableError {
    if (msg.headers?.code === 503) {
      return new StoreUnavailableError("no JetStream stream answered (no responders)");
    }
    const parsed = PubAckReply.safeParse(parseJson(msg.data));
    if (!parsed.success) {
      return new StoreUnavailableError(`unreadable JetStream acknowledgement: ${msg.string().slice(0, 200)}`);
    }
    const { error, stream, seq, duplicate } = parsed.data;
    if (error !== undefined) {
      const code = error.err_code ?? null;
      return new StoreUnavailableError(
        `JetStream refused the message: ${error.description ?? "no description"} (err_code ${code ?? "none"})`,
        { jsErrCode: code },
      );
    }
    if (stream !== this.#stream) {
      return new StoreUnavailableError(
        `an acknowledgement named stream ${JSON.stringify(stream ?? null)}, not ${this.#stream}`,
      );
    }
    // No lower bound beyond 1: a stream deleted and created again numbers from 1 once more.
    if (seq === undefined || seq <= 0) {
      return new StoreUnavailableError(
        `an acknowledgement carried sequence ${seq ?? "none"}, not a stored one`,
      );
    }
    return { seq, duplicate: duplicate === true };
  }
}

function parseJson(data: Uint8Array): unknown {
  try {
    return JSON.parse(Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString("utf8"));
  } catch {
    return undefined;
  }
}
