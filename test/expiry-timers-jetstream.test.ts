import { resourceNames } from "@arbiter/protocol";
import {
  EXPIRY_MAX_ACK_PENDING,
  expiryTimerArmer,
  expiryTimerSubject,
  type FeedMessage,
  openDurableFeed,
  openJetStreamStore,
} from "@arbiter/store";
import { jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectTo, type NatsServerProcess, startNatsServer, until } from "./harness/index.js";

// The expiries stream and consumer as the admin's store makes them, on the nats-server the tests
// run (2.9.10 here): one timer per subject, and a NAK with a delay holds a timer for that long.

let server: NatsServerProcess;
let nc: NatsConnection;
const names = resourceNames("timers");

beforeAll(async () => {
  server = await startNatsServer();
  nc = await connectTo(server.url);
  await (await openJetStreamStore(nc, { prefix: "timers", revocationAckWaitMs: 1000 })).close();
});

afterAll(async () => {
  await nc?.close();
  await server?.stop();
});

describe("expiry timers on JetStream", () => {
  it("keep one timer per expiry while it is pending, held by a delayed NAK longer than the ack wait", async () => {
    const jsm = await jetstreamManager(nc);
    const consumer = await jsm.consumers.info(names.expiriesStream, names.expiriesConsumer);
    expect(consumer.config).toMatchObject({ max_ack_pending: EXPIRY_MAX_ACK_PENDING, max_deliver: -1 });
    const arm = expiryTimerArmer(nc, names);
    expect(await arm(1_900_000_000)).toBe("armed");
    expect(await arm(1_900_000_000)).toBe("pending");
    expect(await arm(1_900_000_001)).toBe("armed");
    const seen: { subject: string; deliveries: number; at: number }[] = [];
    const feed = await openDurableFeed(
      nc,
      { stream: names.expiriesStream, consumer: names.expiriesConsumer },
      async (m: FeedMessage) => {
        seen.push({ subject: m.subject, deliveries: m.deliveries, at: Date.now() });
        if (m.subject === expiryTimerSubject(names, 1_900_000_000) && m.deliveries === 1) m.later(2500);
      },
    );
    try {
      await until(() => seen.length === 3, { name: "the held timer delivered again", timeout: 20_000 });
      const [first, other, again] = seen;
      expect(first).toMatchObject({ subject: "timers.expiries.1900000000", deliveries: 1 });
      expect(other).toMatchObject({ subject: "timers.expiries.1900000001", deliveries: 1 });
      expect(again).toMatchObject({ subject: "timers.expiries.1900000000", deliveries: 2 });
      // Held for the delay asked, though the consumer's ack wait is 1 s.
      expect(again!.at - first!.at).toBeGreaterThanOrEqual(2400);
      await until(async () => (await jsm.streams.info(names.expiriesStream)).state.messages === 0, {
        name: "acknowledged timers gone from the work queue",
      });
      expect(await arm(1_900_000_000)).toBe("armed");
    } finally {
      await feed.stop();
    }
  });

  it("say when there is no expiries stream to hold a timer", async () => {
    expect(await expiryTimerArmer(nc, resourceNames("nothing"))(1_900_000_000)).toBe("missing");
  });
});
