import { parseRulesDocument } from "@arbiter/rules";
import {
  type ArbiterStore,
  createRulesAdmin,
  openJetStreamRevocationLog,
  openJetStreamStore,
  type RevocationLog,
} from "@arbiter/store";
import { createSigner, generateKey } from "@arbiter/trust";
import type { NatsConnection } from "@nats-io/nats-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectTo, type NatsCluster, startNatsCluster } from "./harness/index.js";
import { exampleRulesText } from "./support/fixtures.js";

// With one node of a three-node cluster gone, reading the rules history and the logs still works:
// nats-server releases before 2.12 may place a reader's ephemeral consumer on the node that is
// gone (about one read in three timed out), and nats.js names the consumer in the options it is
// given, so asking again with the same options asked for the same placement.

let cluster: NatsCluster;
let nc: NatsConnection;
let store: ArbiterStore;
let revocations: RevocationLog;

beforeAll(async () => {
  cluster = await startNatsCluster({ nodes: 3 });
  nc = await connectTo(cluster.urls[0]!);
  // Short JetStream timeouts: a reader's consumer placed on the node that is gone costs one each.
  store = await openJetStreamStore(nc, { replicas: 3, ackTimeoutMs: 2000 });
  revocations = openJetStreamRevocationLog(nc, { ackTimeoutMs: 2000 });
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

describe("reading the logs with a cluster node down", () => {
  it("reads the decision log and the revocation log to their end every time", async () => {
    for (let i = 0; i < 8; i++) {
      let decisions = 0;
      for await (const _ of store.decisions.read()) decisions++;
      let revoked = 0;
      for await (const _ of revocations.read()) revoked++;
      expect([decisions, revoked], `read ${i + 1}`).toEqual([0, 0]);
    }
  }, 240_000);
});
