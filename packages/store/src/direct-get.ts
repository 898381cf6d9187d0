import { randomBytes } from "node:crypto";
import { createInbox, type Msg, type NatsConnection, type Subscription } from "@nats-io/nats-core";
import { connectionInboxPrefix } from "./ack-mux.js";
import { StoreUnavailableError } from "./errors.js";

/** The last message stored on one subject of a stream, as a direct get returns it. */
export interface DirectMessage {
  readonly seq: number;
  readonly data: Uint8Array;
  header(name: string): string | undefined;
}

interface Waiter {
  readonly subject: string;
  readonly resolve: (message: DirectMessage | null) => void;
  readonly reject: (err: Error) => void;
  readonly deadline: number;
}

/** Random bytes in each reply subject: a forged answer must guess them. */
const TOKEN_BYTES = 16;

/**
 * Reads the last message of a subject with JetStream direct gets (`$JS.API.DIRECT.GET.<stream>`
 * with `last_by_subj`, nats-server 2.9 and later), answers matched through one wildcard inbox
 * subscription. This is what `kv.get` does, without a request object, timer and captured error per
 * read, so that thousands of reads can be in flight at once. Each read gets an unguessable reply
 * token, and an answer counts only when it names the stream and subject asked for.
 */
export class DirectGetMux {
  readonly #nc: NatsConnection;
  readonly #stream: string;
  readonly #prefix: string;
  readonly #timeoutMs: number;
  readonly #waiting = new Map<string, Waiter>();
  #subscription: Subscription | undefined;
  #sweeper: NodeJS.Timeout | undefined;
  #pool = randomBytes(4096);
  #poolAt = 0;

  constructor(nc: NatsConnection, stream: string, timeoutMs: number) {
    this.#nc = nc;
    this.#stream = stream;
    this.#prefix = createInbox(connectionInboxPrefix(nc));
    this.#timeoutMs = timeoutMs;
  }

  /**
   * The last message stored on `subject`, or null when it has none. Rejects with
   * StoreUnavailableError when the stream does not answer, or answers with anything else.
   */
  last(subject: string): Promise<DirectMessage | null> {
    this.#start();
    const token = this.#token();
    return new Promise((resolve, reject) => {
      this.#waiting.set(token, { subject, resolve, reject, deadline: Date.now() + this.#timeoutMs });
      try {
        this.#nc.publish(`$JS.API.DIRECT.GET.${this.#stream}`, JSON.stringify({ last_by_subj: subject }), {
          reply: `${this.#prefix}.${token}`,
        });
      } catch (err) {
        this.#waiting.delete(token);
        reject(new StoreUnavailableError(`cannot read ${this.#stream}: ${String(err)}`, { cause: err }));
      }
    });
  }

  /** Stops listening; every read still waiting fails. */
  close(): void {
    this.#subscription?.unsubscribe();
    this.#subscription = undefined;
    clearInterval(this.#sweeper);
    this.#failAll(new StoreUnavailableError(`the reader of ${this.#stream} was closed`));
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
    const outcome = this.#judge(msg, waiter.subject);
    if (outcome instanceof Error) waiter.reject(outcome);
    else waiter.resolve(outcome);
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

  #sweep(): void {
    const now = Date.now();
    for (const [token, waiter] of this.#waiting) {
      if (waiter.deadline > now) continue;
      this.#waiting.delete(token);
      waiter.reject(new StoreUnavailableError(`${this.#stream} did not answer within ${this.#timeoutMs} ms`));
    }
  }

  #failAll(err: Error): void {
    for (const waiter of this.#waiting.values()) waiter.reject(err);
    this.#waiting.clear();
  }
}
