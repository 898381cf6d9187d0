import {
  AckPolicy,
  type Consumer,
  DeliverPolicy,
  JetStreamApiCodes,
  JetStreamApiError,
  type JetStreamManager,
  type JsMsg,
  jetstream,
  jetstreamManager,
} from "@nats-io/jetstream";
import { millis, type NatsConnection, nanos } from "@nats-io/nats-core";
import { StoreUnavailableError } from "./errors.js";
import { errorText } from "./text.js";

/** One message of a {@link DurableFeed}, handed to its handler. */
export interface FeedMessage {
  readonly seq: number;
  /** The subject it was stored under. */
  readonly subject: string;
  readonly data: Uint8Array;
  /** Times the server delivered it (1 the first time; more after a holder died or failed). */
  readonly deliveries: number;
  header(name: string): string | undefined;
  /** Tells the server the message is still being worked on (the feed does it on its own too). */
  working(): void;
  /**
   * Asks for the message again in `ms` instead of acknowledging it when the handler returns: the
   * server holds it (a NAK with a delay) and delivers it then to whichever opener pulls first.
   */
  later(ms: number): void;
}

/** Options of {@link openDurableFeed}. */
export interface DurableFeedOptions {
  readonly stream: string;
  /** The durable consumer's name: every process opening it shares its messages. */
  readonly consumer: string;
  /** Pause before a message whose handler failed is delivered again. */
  readonly retryMs?: number;
}

/**
 * A stream read through a durable consumer shared by every process that opens it: each message
 * goes to one of them, one message at a time across all (`max_ack_pending: 1`, unless the
 * consumer was made with more), and is delivered again when its holder dies, its handler throws,
 * or its handler asked for it `later`. While a handler runs the feed sends in-progress
 * acknowledgements every third of the ack wait.
 */
export interface DurableFeed {
  /** The stream's last sequence now. Throws StoreUnavailableError. */
  lastSeq(): Promise<number>;
  /**
   * How far the consumer is: the highest stream sequence up to which every message it is delivered
   * is acknowledged, and how many of its messages are not yet acknowledged (pending delivery or
   * acknowledgement). A filtered consumer's floor stays at its last message, whatever follows it in
   * the stream. Throws StoreUnavailableError.
   */
  progress(): Promise<{ readonly ackFloor: number; readonly unacknowledged: number }>;
  /**
   * Pull requests waiting on the consumer now, this opener's own included (each opener keeps one
   * while it is open): how many openers could take a message at once. Throws StoreUnavailableError.
   */
  waitingPulls(): Promise<number>;
  /**
   * Stops taking messages and waits for the handler of the one being handled, which should give
   * up soon (see `stopping`); a message whose handler fails then goes straight to another holder.
   */
  stop(): Promise<void>;
  /** True once `stop()` was called: a long handler checks it and throws to hand its message on. */
  readonly stopping: boolean;
  /** Resolves when the feed ends: null after `stop()`, the error when it broke on its own. */
  readonly ended: Promise<Error | null>;
}

/**
 * Binds to a durable pull consumer made by {@link createFeedConsumer} (an admin's store makes it;
 * the opener never creates one) and hands its messages to `handler`, one at a time, sending
 * in-progress acknowledgements every third of the consumer's ack wait. Throws
 * StoreUnavailableError when the consumer is missing or cannot be opened.
 */
export async function openDurableFeed(
  nc: NatsConnection,
  options: DurableFeedOptions,
  handler: (message: FeedMessage) => Promise<void>,
): Promise<DurableFeed> {
  const { stream, consumer: name } = options;
  const retryMs = options.retryMs ?? 1000;
  let jsm: JetStreamManager;
  let ackWaitMs: number;
  let messages: Awaited<ReturnType<Consumer["consume"]>>;
  try {
    jsm = await jetstreamManager(nc);
    const info = await jsm.consumers.info(stream, name);
    ackWaitMs = millis(info.config.ack_wait ?? nanos(DEFAULT_FEED_ACK_WAIT_MS));
    const consumer = await jetstream(nc).consumers.get(stream, name);
    messages = await consumer.consume({ max_messages: 1, expires: 5000 });
  } catch (err) {
    throw new StoreUnavailableError(`cannot open consumer ${name} of ${stream}: ${errorText(err)}`, {
      cause: err,
    });
  }
  let stopped = false;
  const ended = (async (): Promise<Error | null> => {
    try {
      for await (const m of messages) {
        const heartbeat = setInterval(
          () => {
            try {
              m.working();
            } catch {
              // The connection is closing: the message goes to another holder after the ack wait.
            }
          },
          Math.max(ackWaitMs / 3, 100),
        );
        try {
          const message = feedMessage(m);
          await handler(message);
          if (message.retryInMs === undefined) await m.ackAck();
          else m.nak(message.retryInMs);
        } catch {
          // Stopping hands the message on at once; a failure is retried after a pause.
          try {
            m.nak(stopped ? 0 : retryMs);
          } catch {
            // Not connected: redelivered after the ack wait.
          }
        } finally {
          clearInterval(heartbeat);
        }
      }
      return stopped ? null : new StoreUnavailableError(`the feed of consumer ${name} ended`);
    } catch (err) {
      return stopped
        ? null
        : new StoreUnavailableError(`the feed of ${name} broke: ${errorText(err)}`, { cause: err });
    }
  })();
  return {
    ended,
    get stopping() {
      return stopped;
    },
    lastSeq: async () => {
      try {
        return (await jsm.streams.info(stream)).state.last_seq;
      } catch (err) {
        throw new StoreUnavailableError(`cannot read stream ${stream}: ${errorText(err)}`, { cause: err });
      }
    },
    progress: async () => {
      try {
        const info = await jsm.consumers.info(stream, name);
        return {
          ackFloor: info.ack_floor.stream_seq,
          unacknowledged: info.num_pending + info.num_ack_pending,
        };
      } catch (err) {
        throw new StoreUnavailableError(`cannot read consumer ${name}: ${errorText(err)}`, { cause: err });
      }
    },
    waitingPulls: async () => {
      try {
        return (await jsm.consumers.info(stream, name)).num_waiting;
      } catch (err) {
        throw new StoreUnavailableError(`cannot read consumer ${name}: ${errorText(err)}`, { cause: err });
      }
    },
    stop: async () => {
      stopped = true;
      await messages.close();
      await ended;
    },
  };
}

/** The ack wait of the fan-out's consumers unless the admin's store is told otherwise. */
export const DEFAULT_FEED_ACK_WAIT_MS = 10_000;

/**
 * What {@link createFeedConsumer} found and did: made the consumer, found it as asked, gave an
 * existing one the filter subject asked for in place (one made before it had one), or found one
 * with another filter that the server would not change (left as it is).
 */
export type FeedConsumerOutcome = "created" | "kept" | "refiltered" | "refilter-refused";

/**
 * Creates the durable pull consumer a {@link DurableFeed} binds to, if it is not there
 * (idempotent): explicit acks, one message in flight across every holder unless
 * `shared.maxAckPending` says more (each holder still takes one at a time), redelivered without
 * limit, every message from the stream's start (of `shared.filterSubject` only, when given). An
 * existing one is left as it is but for its filter: one with another filter subject than
 * `shared.filterSubject` is given it in place (nats-server 2.9.10 and later do so, keeping its
 * acknowledgements), or left when the server refuses. Only an admin's store calls it: workers may
 * not create consumers there (a push consumer delivers anywhere).
 */
export async function createFeedConsumer(
  jsm: JetStreamManager,
  stream: string,
  name: string,
  ackWaitMs: number,
  shared: { readonly maxAckPending?: number; readonly filterSubject?: string } = {},
): Promise<FeedConsumerOutcome> {
  try {
    const { config } = await jsm.consumers.info(stream, name);
    const wanted = shared.filterSubject;
    if (wanted === undefined || (config.filter_subject ?? "") === wanted) return "kept";
    return await jsm.consumers.update(stream, name, { filter_subject: wanted }).then(
      () => "refiltered" as const,
      (err: unknown) => {
        if (err instanceof JetStreamApiError) return "refilter-refused" as const;
        throw err;
      },
    );
  } catch (err) {
    if (!(err instanceof JetStreamApiError) || err.code !== JetStreamApiCodes.ConsumerNotFound) throw err;
  }
  try {
    await jsm.consumers.add(stream, {
      durable_name: name,
      ack_policy: AckPolicy.Explicit,
      ack_wait: nanos(ackWaitMs),
      max_ack_pending: shared.maxAckPending ?? 1,
      max_deliver: -1,
      deliver_policy: DeliverPolicy.All,
      ...(shared.filterSubject === undefined ? {} : { filter_subject: shared.filterSubject }),
    });
    return "created";
  } catch (err) {
    // Another admin may have created it between our look and our add.
    const there = await jsm.consumers.info(stream, name).then(
      () => true,
      () => false,
    );
    if (!there) throw err;
    return "kept";
  }
}

function feedMessage(m: JsMsg): FeedMessage & { readonly retryInMs: number | undefined } {
  let retryInMs: number | undefined;
  return {
    seq: m.seq,
    subject: m.subject,
    data: m.data,
    deliveries: m.info.deliveryCount,
    header: (name) => m.headers?.get(name) || undefined,
    working: () => m.working(),
    later: (ms) => {
      retryInMs = Math.max(0, Math.ceil(ms));
    },
    get retryInMs() {
      return retryInMs;
    },
  };
}
