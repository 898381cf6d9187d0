import { openJetStreamActiveIndex, openJetStreamRevocationLog, openJetStreamStore } from "@arbiter/store";
import type { NatsConnection } from "@nats-io/nats-core";
import { afterAll, beforeAll } from "vitest";
import { describeRevocationStoresContract } from "./contracts/revocation-contract.js";
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

// Each test gets its own prefix, hence its own empty bucket and stream, on the one server.
describeRevocationStoresContract("JetStream", {
  createIndex: async () => openJetStreamActiveIndex(nc, { prefix: `index${++run}` }),
  createLog: async () => {
    const prefix = `log${++run}`;
    await (await openJetStreamStore(nc, { prefix })).close();
    return openJetStreamRevocationLog(nc, { prefix });
  },
});
