import { resourceNames } from "@arbiter/protocol";
import {
  DEFAULT_REPLAY_WINDOW_MS,
  decisionBatchFromTexts,
  openJetStreamReplayGuard,
  openJetStreamStore,
} from "@arbiter/store";
import { createSigner, generateKey } from "@arbiter/trust";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { describeStoreContract } from "./contracts/store-contract.js";
import { connectTo, type NatsServerProcess, startNatsServer } from "./harness/index.js";

let server: NatsServerProcess;
let nc: NatsConnection;
let run = 0;

beforeAll(async () => {
  server = await startNatsServer();
  nc = await connectTo(server.url);
});

afterAll(async () => {
  await nc?.close();
  await server?.stop();
});

// Each test gets its own prefix, hence its own empty streams, on the one server.
describeStoreContract("JetStream", {
  create: async () => openJetStreamStore(nc, { prefix: `contract${++run}` }),
});

describe("the replay bucket of signed requests", () => {
  it("is created by whoever deploys the store (an admin), not by a worker's store", async () => {
    const streams = async () => {
      const names: string[] = [];
      for await (const name of (await jetstreamManager(nc)).streams.names()) names.push(name);
      return names;
    };
    await openJetStreamStore(nc, { prefix: "workerside", createReplayBucket: false });
    expect(await streams()).not.toContain("KV_workerside-replay");
    await openJetStreamStore(nc, { prefix: "adminside" });
    expect(await streams()).toContain("KV_adminside-replay");
  });

  it("is refused by a worker whose token age it would forget sooner than tokens expire", async () => {
    await openJetStreamStore(nc, { prefix: "window" });
    const guard = await openJetStreamReplayGuard(nc, {
      prefix: "window",
      windowMs: DEFAULT_REPLAY_WINDOW_MS,
    });
    expect(await guard.claim("token-1")).toBe(true);
    expect(await guard.claim("token-1")).toBe(false);
    guard.close();
    await expect(openJetStreamReplayGuard(nc, { prefix: "window", windowMs: 120_000 })).rejects.toMatchObject(
      {
        code: "INVALID_CONFIG",
        message: expect.stringContaining(
          `the window-replay bucket remembers token ids for ${DEFAULT_REPLAY_WINDOW_MS} ms, less than this worker's maximum token age plus clock skew (120000 ms)`,
        ),
      },
    );
  });
});

describe("the active index projection's consumer", () => {
  const signer = createSigner(generateKey("N").seed);
  const batch = (decisionId: string, reevaluations: boolean) => ({
    ...decisionBatchFromTexts([{ decisionId, text: JSON.stringify({ decisionId }) }], signer),
    reevaluations,
  });

  it("is delivered the requests' batches only; one made without that filter (an older deployment) is given it at open, keeping its acknowledgements", async () => {
    const names = resourceNames("refilter");
    const store = await openJetStreamStore(nc, { prefix: "refilter" });
    const jsm = await jetstreamManager(nc);
    const consumer = () => jsm.consumers.info(names.decisionsStream, names.activeIndexConsumer);
    expect((await consumer()).config.filter_subject).toBe(names.decisionsSubject);

    // As an older store made it: the same consumer without a filter, which had taken two messages.
    const { config } = await consumer();
    await jsm.consumers.delete(names.decisionsStream, names.activeIndexConsumer);
    await jsm.consumers.add(names.decisionsStream, { ...config, filter_subject: undefined });
    await store.decisions.append(batch("r1", false));
    await store.decisions.append(batch("e1", true));
    const taken = await jetstream(nc).consumers.get(names.decisionsStream, names.activeIndexConsumer);
    for (let n = 0; n < 2; n++) await (await taken.next({ expires: 5000 }))?.ackAck();
    await store.decisions.append(batch("r2", false));
    await store.decisions.append(batch("e2", true));
    expect(await consumer()).toMatchObject({ num_pending: 2, ack_floor: { stream_seq: 2 } });
    await store.close();

    const again = await openJetStreamStore(nc, { prefix: "refilter" });
    try {
      const refiltered = await consumer();
      expect(refiltered.config.filter_subject).toBe(names.decisionsSubject);
      expect(refiltered).toMatchObject({ num_pending: 1, ack_floor: { stream_seq: 2 } });
      const next = await taken.next({ expires: 5000 });
      expect(next?.subject).toBe(names.decisionsSubject);
      expect(next?.seq).toBe(3);
      await next?.ackAck();
      // Nothing more is delivered: the re-evaluation after it is not for this consumer.
      expect(await consumer()).toMatchObject({ num_pending: 0, num_ack_pending: 0 });
    } finally {
      await again.close();
    }
  });
});
