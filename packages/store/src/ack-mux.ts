import { randomBytes } from "node:crypto";
import { createInbox, headers, type Msg, type NatsConnection, type Subscription } from "@nats-io/nats-core";
import { z } from "zod";
import { StoreUnavailableError } from "./errors.js";

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

/** Random bytes in each acknowledgement subject: a forged acknowledgement must guess them. */
const TOKEN_BYTES = 16;

interface Waiter {
  readonly resolve: (ack: { seq: number; duplicate: boolean }) => void;
  readonly reject: (err: Error) => void;
  readonly deadline: number;
}

/**
 * Publishes to one JetStream stream and matches acknowledgements through one wildcard inbox
 * subscription. It does what `JetStreamClient.publish` does for a single message, with a fraction
 * of the client CPU (no per-publish request object, timer or error capture), which matters on the
 * decision path where every answer waits for one acknowledgement. Each publish gets an
 * unguessable reply token, and an acknowledgement counts only when it carries no error, names the
 * expected stream and a sequence above 0.
 */
export class AckMux {
  readonly #nc: NatsConnection;
  readonly #stream: string;
  readonly #prefix: string;
  readonly #waiting = new Map<string, Waiter>();
  readonly #timeoutMs: number;
  #subscription: Subscription | undefined;
  #sweeper: NodeJS.Timeout | undefined;
  #pool = randomBytes(4096);
  #poolAt = 0;

  constructor(nc: NatsConnection, stream: string, timeoutMs: number) {
    this.#nc = nc;
    // Under the connection's own inbox prefix (nats.js `inboxPrefix`), which the NATS permissions
    // may reserve for this credential: acknowledgements then reach no one else.
    this.#prefix = createInbox(connectionInboxPrefix(nc));
    this.#stream = stream;
    this.#timeoutMs = timeoutMs;
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
  ): Promise<{ seq: number; duplicate: boolean }> {
    this.#start();
    const token = this.#token();
    const hdrs = headers();
    if (msgId !== null) hdrs.set("Nats-Msg-Id", msgId);
    for (const [key, value] of Object.entries(extraHeaders)) hdrs.set(key, value);
    return new Promise((resolve, reject) => {
      this.#waiting.set(token, {
        resolve,
        reject,
        deadline: Date.now() + this.#timeoutMs,
      });
      try {
        this.#nc.publish(subject, data, { reply: `${this.#prefix}.${token}`, headers: hdrs });
      } catch (err) {
        this.#waiting.delete(token);
        reject(new StoreUnavailableError(`cannot publish: ${String(err)}`, { cause: err }));
      }
    });
  }

  /** Stops listening; every publish still waiting fails. */
  close(): void {
    this.#subscription?.unsubscribe();
    this.#subscription = undefined;
    clearInterval(this.#sweeper);
    this.#failAll(new StoreUnavailableError("the publisher was closed before JetStream acknowledged"));
  }

  #token(): string {
    if (this.#poolAt + TOKEN_BYTES > this.#pool.length) {
      this.#pool = randomBytes(4096);
      this.#poolAt = 0;
    }
    const token = this.#pool.toString("base64url", this.#poolAt, this.#poolAt + TOKEN_BYTES);
    this.#poolAt += TOKEN_BYTES;
    return token;
  }

  #start(): void {
    if (this.#subscription) return;
    this.#subscription = this.#nc.subscribe(`${this.#prefix}.*`, {
      callback: (_err, msg) => this.#onReply(msg),
    });
    void this.#subscription.closed.then(() =>
      this.#failAll(new StoreUnavailableError("the connection to NATS closed")),
    );
    this.#sweeper = setInterval(() => this.#sweep(), Math.min(250, this.#timeoutMs)).unref();
  }

  #onReply(msg: Msg): void {
    const token = msg.subject.slice(this.#prefix.length + 1);
    const waiter = this.#waiting.get(token);
    if (!waiter) return;
    this.#waiting.delete(token);
    const outcome = this.#judge(msg);
    if (outcome instanceof Error) waiter.reject(outcome);
    else waiter.resolve(outcome);
  }

  /** What an acknowledgement says: where the message was stored, or why it does not count. */
  #judge(msg: Msg): { seq: number; duplicate: boolean } | StoreUnavailableError {
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

  #sweep(): void {
    const now = Date.now();
    for (const [token, waiter] of this.#waiting) {
      if (waiter.deadline > now) continue;
      this.#waiting.delete(token);
      waiter.reject(new StoreUnavailableError(`no acknowledgement within ${this.#timeoutMs} ms`));
    }
  }

  #failAll(err: Error): void {
    for (const waiter of this.#waiting.values()) waiter.reject(err);
    this.#waiting.clear();
  }
}

function parseJson(data: Uint8Array): unknown {
  try {
    return JSON.parse(Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString("utf8"));
  } catch {
    return undefined;
  }
}

/** The `inboxPrefix` `nc` was connected with, or undefined for nats.js' default (`_INBOX`). */
export function connectionInboxPrefix(nc: NatsConnection): string | undefined {
  const options: unknown = Reflect.get(nc, "options");
  if (typeof options !== "object" || options === null) return undefined;
  const prefix: unknown = Reflect.get(options, "inboxPrefix");
  return typeof prefix === "string" && prefix.length > 0 ? prefix : undefined;
}
