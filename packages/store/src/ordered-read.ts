import type { Consumer, JsMsg } from "@nats-io/jetstream";

/**
 * The messages of an ordered consumer: up to the end of what the stream holds now (batches are
 * fetched until one is empty or ends the backlog), or, with `follow`, also every later one until
 * `signal` aborts. The consumer is closed when the reader stops.
 */
export async function* orderedMessages(
  consumer: Consumer,
  follow: boolean | undefined,
  signal?: AbortSignal,
): AsyncGenerator<JsMsg> {
  if (!follow) {
    for (;;) {
      const batch = await consumer.fetch({ max_messages: 512, expires: 1000 });
      let received = 0;
      for await (const m of batch) {
        received++;
        yield m;
        if (m.info.pending === 0) return;
      }
      if (received === 0) return;
    }
  }
  const messages = await consumer.consume({ max_messages: 512, idle_heartbeat: 1000, expires: 2000 });
  const onAbort = () => void messages.close();
  signal?.addEventListener("abort", onAbort, { once: true });
  try {
    for await (const m of messages) yield m;
  } finally {
    signal?.removeEventListener("abort", onAbort);
    await messages.close();
  }
}
