import { openJetStreamStore } from "@arbiter/store";
import type { NatsConnection } from "@nats-io/nats-core";
import { afterAll, beforeAll } from "vitest";
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
