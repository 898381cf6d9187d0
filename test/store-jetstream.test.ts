import { DEFAULT_REPLAY_WINDOW_MS, openJetStreamReplayGuard, openJetStreamStore } from "@arbiter/store";
import { jetstreamManager } from "@nats-io/jetstream";
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
