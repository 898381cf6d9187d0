import type { Consumer, JetStreamClient, JsMsg, OrderedConsumerOptions } from "@nats-io/jetstream";
import { StoreUnavailableError } from "./errors.js";
import { errorText } from "./text.js";

/**
 * Most bytes one fetch asks for: nats-server cuts off a connection past some 64 MB queued for it
 * (`max_pending`) as a slow consumer, and a host chooses how large its recorded requests are.
 * Larger than any message at the default max_payload and up to 16 MiB.
 */
const FETCH_BYTES = 16 * 1024 * 1024;

/** How long a reader goes on asking for messages the consumer still has before it gives up. */
const UNDELIVERED_MS = 20_000;

/** Times an ordered consumer is asked for before a reader gives up. */
const CONSUMER_ATTEMPTS = 8;

/**
 * An ordered consumer of `stream`, asked for again when the server does not answer: nats-server
 * before 2.12 may place a reader's ephemeral consumer on a cluster node that is down (with one
 * node of three down, about one attempt in three timed out), and each attempt is placed anew.
 * Throws what the last attempt threw, or StoreUnavailableError at once when `signal` aborts (a
 * reader stopped while NATS is away must not wait out every attempt).
 */
export async function orderedConsumer(
  js: JetStreamClient,
  stream: string,
  options: Partial<OrderedConsumerOptions>,
  signal?: AbortSignal,
): Promise<Consumer> {
  for (let attempt = 1; ; attempt++) {
    try {
      // A copy each time: nats.js writes the consumer's name into the options it is given, and
      // the same name again is the same placement on the node that is down.
      return await unlessAborted(js.consumers.get(stream, { ...options }), signal);
    } catch (err) {
      if (signal?.aborted || attempt >= CONSUMER_ATTEMPTS || !/timeout/i.test(errorText(err))) throw err;
    }
  }
}

/** `work`, or a StoreUnavailableError as soon as `signal` aborts. */
function unlessAborted<T>(work: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (signal === undefined) return work;
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(new StoreUnavailableError("the read was stopped"));
    if (signal.aborted) onAbort();
    signal.addEventListener("abort", onAbort, { once: true });
    work.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}

/**
 * The messages of an ordered consumer: up to the end of what the stream holds now (until the
 * consumer has none pending), or, with `follow`, also every later one until `signal` aborts. Each
 * fetch asks for at most 16 MiB. A fetch that brings nothing ends the read only when the consumer
 * has nothing pending: with a connection cut off meanwhile (the consumer then starts again after
 * the last message read) it asks again, and throws StoreUnavailableError when the messages still
 * pending do not come for 20 s — never a read that ends early as if the stream did. The consumer
 * is closed when the reader stops.
 */
export async function* orderedMessages(
  consumer: Consumer,
  follow: boolean | undefined,
  signal?: AbortSignal,
): AsyncGenerator<JsMsg> {
  if (!follow) {
    // As the consumer was made: nothing to read, so no fetch waits out its expiry for nothing.
    if ((await consumer.info(true)).num_pending === 0) return;
    let emptySince: number | null = null;
    // After a fetch that could not hold even the next message (one past 16 MiB: a server whose
    // max_payload allows it), that message is fetched alone.
    let alone = false;
    for (;;) {
      let received = 0;
      let tooLarge = false;
      try {
        const batch = await consumer.fetch(
          alone ? { max_messages: 1, expires: 1000 } : { max_bytes: FETCH_BYTES, expires: 1000 },
        );
        for await (const m of batch) {
          received++;
          yield m;
          if (m.info.pending === 0) return;
        }
      } catch (err) {
        // The fetch's bytes are spent: the next message did not fit what was left (nats-server
        // 2.9 says so; 2.10 and later end the fetch as completed), and the next fetch starts with it.
        if (!/exceeds maxbytes|batch completed/i.test(errorText(err))) throw err;
        tooLarge = received === 0;
      }
      alone = tooLarge;
      if (received > 0 || tooLarge) {
        emptySince = null;
        continue;
      }
      const pending = await pendingOf(consumer);
      if (pending === 0) return;
      emptySince ??= Date.now();
      if (Date.now() - emptySince > UNDELIVERED_MS) {
        throw new StoreUnavailableError(
          `${pending ?? "some"} messages of the stream were not delivered within ${UNDELIVERED_MS} ms`,
        );
      }
    }
  }
  const messages = await consumer.consume({
    max_bytes: FETCH_BYTES,
    idle_heartbeat: 1000,
    expires: 2000,
  });
  const onAbort = () => void messages.close();
  signal?.addEventListener("abort", onAbort, { once: true });
  try {
    for await (const m of messages) yield m;
  } finally {
    signal?.removeEventListener("abort", onAbort);
    await messages.close();
  }
}

/** The messages the consumer has not delivered yet; null when it cannot say now (being made again). */
async function pendingOf(consumer: Consumer): Promise<number | null> {
  try {
    return (await consumer.info(false)).num_pending;
  } catch (err) {
    if (err instanceof Error && /closed|draining/i.test(errorText(err))) throw err;
    return null;
  }
}
