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
  /** What the message counts against `maxPendingBytes`. */
  readonly bytes: number;
}

/** A send held back until the messages before it leave room. */
interface Held {
  readonly bytes: number;
  readonly start: () => void;
  readonly reject: (err: Error) => void;
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
  /**
   * Most bytes of sent messages waiting for their answer (a message alone may be larger); sends
   * past it wait, in order, and their time starts when they leave. None when absent.
   */
  readonly maxPendingBytes?: number;
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
  readonly #held: Held[] = [];
  #pendingBytes = 0;
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
    const max = this.#options.maxPendingBytes;
    // A string's length stands for its bytes: measuring UTF-8 would cost a pass over each message.
    const bytes = max === undefined ? 0 : data.length;
    return new Promise((resolve, reject) => {
      if (max !== undefined && (this.#held.length > 0 || !this.#hasRoom(bytes, max))) {
        const start = () => this.#publish(subject, data, context, headers, bytes, resolve, reject);
        this.#held.push({ bytes, start, reject });
      } else {
        this.#publish(subject, data, context, headers, bytes, resolve, reject);
      }
    });
  }

  #hasRoom(bytes: number, max: number): boolean {
    return this.#pendingBytes === 0 || this.#pendingBytes + bytes <= max;
  }

  #publish(
    subject: string,
    data: string | Uint8Array,
    context: C,
    headers: MsgHdrs | undefined,
    bytes: number,
    resolve: (answer: R) => void,
    reject: (err: Error) => void,
  ): void {
    const token = this.#token();
    this.#waiting.set(token, {
      context,
      resolve,
      reject,
      deadline: Date.now() + this.#options.timeoutMs,
      bytes,
    });
    this.#pendingBytes += bytes;
    try {
      this.#nc.publish(subject, data, {
        reply: `${this.#prefix}.${token}`,
        ...(headers === undefined ? {} : { headers }),
      });
    } catch (err) {
      this.#settled(token);
      reject(new StoreUnavailableError(this.#options.sendFailed(err), { cause: err }));
    }
  }

  /** Forgets the waiter of `token`, and lets held sends go as far as its bytes make room. */
  #settled(token: string): Waiter<C, R> | undefined {
    const waiter = this.#waiting.get(token);
    if (waiter === undefined) return undefined;
    this.#waiting.delete(token);
    this.#pendingBytes -= waiter.bytes;
    const max = this.#options.maxPendingBytes;
    while (max !== undefined && this.#held.length > 0 && this.#hasRoom(this.#held[0]!.bytes, max)) {
      this.#held.shift()!.start();
    }
    return waiter;
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
    const waiter = this.#settled(token);
    if (!waiter) return;
    const outcome = this.#options.judge(msg, waiter.context);
    if (outcome instanceof StoreUnavailableError) waiter.reject(outcome);
    else waiter.resolve(outcome);
  }

  #sweep(): void {
    const now = Date.now();
    for (const [token, waiter] of this.#waiting) {
      if (waiter.deadline > now) continue;
      this.#settled(token);
      waiter.reject(new StoreUnavailableError(this.#options.timedOut));
    }
  }

  #failAll(err: Error): void {
    const held = this.#held.splice(0);
    for (const waiter of this.#waiting.values()) waiter.reject(err);
    this.#waiting.clear();
    this.#pendingBytes = 0;
    for (const send of held) send.reject(err);
  }
}

/**
 * The `inboxPrefix` `nc` was connected with (the permissions reserve one per role), or undefined
 * for nats.js' default (`_INBOX`).
 */
export function connectionInboxPrefix(nc: NatsConnection): string | undefined {
  const options: unknown = Reflect.get(nc, "options");
  if (typeof options !== "object" || options === null) return undefined;
  const prefix: unknown = Reflect.get(options, "inboxPrefix");
  return typeof prefix === "string" && prefix.length > 0 ? prefix : undefined;
}
