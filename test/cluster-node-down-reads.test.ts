import { parseRulesDocument } from "@arbiter/rules";
import { type ArbiterStore, createRulesAdmin, openJetStreamStore } from "@arbiter/store";
import { createSigner, generateKey } from "@arbiter/trust";
import type { NatsConnection } from "@nats-io/nats-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectTo, type NatsCluster, startNatsCluster } from "./harness/index.js";
import { exampleRulesText } from "./support/fixtures.js";

// With one node of a three-node cluster gone, reading the rules history still works: nats-server
// releases before 2.12 may place a reader's ephemeral consumer on the node that is gone.

let cluster: NatsCluster;
let nc: NatsConnection;
let store: ArbiterStore;

beforeAll(async () => {
  cluster = await startNatsCluster({ nodes: 3 });
  nc = await connectTo(cluster.urls[0]!);
  store = await openJetStreamStore(nc, { replicas: 3 });
  const admin = createRulesAdmin({ store, signer: createSigner(generateKey("O").seed) });
  await admin.apply(parseRulesDocument(exampleRulesText()));
  await cluster.servers[2]!.stop();
}, 60_000);

afterAll(async () => {
  await store?.close();
  await nc?.close();
  await cluster?.stop();
});

describe("reading the rules with a cluster node down", () => {
  it("reads the whole history every time", async () => {
    for (let i = 0; i < 12; i++) {
      const events = [];
      for await (const event of store.rules.read()) events.push(event);
      expect(events.length, `read ${i + 1}`).toBeGreaterThan(0);
    }
  }, 120_000);
});
