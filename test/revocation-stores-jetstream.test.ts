import { resourceNames } from "@arbiter/protocol";
import {
  openJetStreamActiveIndex,
  openJetStreamRevocationLog,
  openJetStreamStore,
  type RevocationLog,
} from "@arbiter/store";
import { jetstream } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import { afterAll, beforeAll } from "vitest";
import { describeRevocationStoresContract } from "./contracts/revocation-contract.js";
import { connectTo, type NatsServerProcess, startNatsServer } from "./harness/index.js";

const servers: NatsServerProcess[] = [];
/** A connection to a server of each max_payload asked for (the default one under `undefined`). */
const connections = new Map<number | undefined, NatsConnection>();
/** Where each log writes: its connection and prefix. */
const written = new WeakMap<RevocationLog, { nc: NatsConnection; prefix: string }>();
let run = 0;

async function connectionFor(maxPayload: number | undefined): Promise<NatsConnection> {
  const open = connections.get(maxPayload);
  if (open !== undefined) return open;
  const server = await startNatsServer(
    maxPayload === undefined ? {} : { extraConfig: `max_payload: ${maxPayload}\n` },
  );
  servers.push(server);
  const nc = await connectTo(server.url);
  connections.set(maxPayload, nc);
  return nc;
}

beforeAll(async () => {
  await connectionFor(undefined);
});

afterAll(async () => {
  for (const nc of connections.values()) await nc.close();
  for (const server of servers) await server.stop();
});

// Each test gets its own prefix, hence its own empty bucket and stream, on the one server.
describeRevocationStoresContract("JetStream", {
  createIndex: async () =>
    openJetStreamActiveIndex(await connectionFor(undefined), { prefix: `index${++run}` }),
  createLog: async (options) => {
    const nc = await connectionFor(options?.maxPayload);
    const prefix = `log${++run}`;
    await (await openJetStreamStore(nc, { prefix })).close();
    const log = openJetStreamRevocationLog(nc, { prefix });
    written.set(log, { nc, prefix });
    return log;
  },
  storeRaw: async (log, text) => {
    const { nc, prefix } = written.get(log)!;
    await jetstream(nc).publish(resourceNames(prefix).revocationsSubject, text);
  },
});
