import { randomBytes } from "node:crypto";
import {
  createInbox,
  type Msg,
  type MsgHdrs,
  type NatsConnection,
  type Subscription,
} from "@nats-io/nats-core";
import { StoreUnavailableError } from "./errors.js";

/** Random bytes in each reply subject: a forged answer must guess them. */
const TOKEN_BYTES = 16;

interface Waiter<C, R> {
  readonly context: C;
  readonly resolve: (answer: R) => void;
  readonly reject: (err: Error) => void;
  readonly deadline: number;
}

/** How a {@link ReplyMux} judges an answer, and what its failures say. */
export interface ReplyMuxOptions<C, R> {
  readonly timeoutMs: number;
  /** What one answer means for the message it answers (sent with `context`), or why it does not count. */
  readonly judge: (msg: Msg, context: C) => R | StoreUnavailableError;
  /** The message of a send the connection refused. */
  readonly sendFailed: (err: unknown) => string;
  /** The message of a send with no answer within `timeoutMs`. */
  readonly timedOut: string;
  /** The message of the sends still waiting when the mux is closed. */
  readonly closed: string;
}

/**
 * Sends messages whose answers come back through one wildcard inbox subscription, under the
 * connection's own inbox prefix, each matched by an unguessable reply token: what a request does,
 * without a request object, timer and captured error per message, so that thousands can be in
 * flight at once. Used by {@link AckMux} (JetStream publishes) and {@link DirectGetMux} (direct gets).
 */
export class ReplyMux<C, R> {
  readonly #nc: NatsConnection;
  readonly #prefix: string;
  readonly #options: ReplyMuxOptions<C, R>;
  readonly #waiting = new Map<string, Waiter<C, R>>();
  #subscription: Subscription | undefined;
  #sweeper: NodeJS.Timeout | undefined;
  #pool = randomBytes(4096);
  #poolAt = 0;

  constructor(nc: NatsConnection, options: ReplyMuxOptions<C, R>) {
    this.#nc = nc;
    // Under the connection's own inbox prefix (nats.js `inboxPrefix`), which the NATS permissions
    // may reserve for this credential: answers then reach no one else.
    this.#prefix = createInbox(connectionInboxPrefix(nc));
    this.#options = options;
  }

  /** Publishes `data` on `subject` and resolves with the judged answer; rejects with StoreUnavailableError. */
  send(subject: string, data: string | Uint8Array, context: C, headers?: MsgHdrs): Promise<R> {
    this.#start();
    const token = this.#token();
    return new Promise((resolve, reject) => {
      this.#waiting.set(token, { context, resolve, reject, deadline: Date.now() + this.#options.timeoutMs });
      try {
        this.#nc.publish(subject, data, {
          reply: `${this.#prefix}.${token}`,
          ...(headers === undefined ? {} : { headers }),
        });
      } catch (err) {
        this.#waiting.delete(token);
        reject(new StoreUnavailableError(this.#options.sendFailed(err), { cause: err }));
      }
    });
  }

  /** Stops listening; every send still waiting fails. */
  close(): void {
    this.#subscription?.unsubscribe();
    this.#subscription = undefined;
    clearInterval(this.#sweeper);
    this.#failAll(new StoreUnavailableError(this.#options.closed));
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
    this.#sweeper = setInterval(() => this.#sweep(), Math.min(250, this.#options.timeoutMs)).unref();
  }

  #onReply(msg: Msg): void {
    const token = msg.subject.slice(this.#prefix.length + 1);
    const waiter = this.#waiting.get(token);
    if (!waiter) return;
    this.#waiting.delete(token);
    const outcome = this.#options.judge(msg, waiter.context);
    if (outcome instanceof StoreUnavailableError) waiter.reject(outcome);
    else waiter.resolve(outcome);
  }

  #sweep(): void {
    const now = Date.now();
    for (const [token, waiter] of this.#waiting) {
      if (waiter.deadline > now) continue;
      this.#waiting.delete(token);
      waiter.reject(new StoreUnavailableError(this.#options.timedOut));
    }
  }

  #failAll(err: Error): void {
    for (const waiter of this.#waiting.values()) waiter.reject(err);
    this.#waiting.clear();
  }
}

/** The `inboxPrefix` `nc` was connected with, or undefined for nats.js' default (`_INBOX`). */
function connectionInboxPrefix(nc: NatsConnection): string | undefined {
  const options: unknown = Reflect.get(nc, "options");
  if (typeof options !== "object" || options === null) return undefined;
  const prefix: unknown = Reflect.get(options, "inboxPrefix");
  return typeof prefix === "string" && prefix.length > 0 ? prefix : undefined;
}
