import { DecisionV1, PolicyResponseV1 } from "@arbiter/protocol";
import { parseRulesDocument } from "@arbiter/rules";
import { type ArbiterStore, createRulesAdmin, openJetStreamStore, type RulesAdmin } from "@arbiter/store";
import { createSigner, generateKey } from "@arbiter/trust";
import { createWorker, type Worker } from "@arbiter/worker";
import { jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectTo, type NatsCluster, startNatsCluster, until } from "./harness/index.js";
import { configuredWorkerKey } from "./support/arbiter.js";
import { exampleRulesText, fixtureJson } from "./support/fixtures.js";

const silent = pino({ level: "silent" });

/** A startComponent request for a component of its own (so no two share a host cache key). */
function startRequest(componentId: string): Uint8Array {
  const request = fixtureJson("start-component") as { requestId: string; request: Record<string, unknown> };
  request.requestId = crypto.randomUUID();
  request.request = { ...request.request, componentId };
  return new TextEncoder().encode(JSON.stringify(request));
}

describe("three workers on a three-node JetStream cluster (R3)", () => {
  let cluster: NatsCluster;
  let client: NatsConnection;
  let store: ArbiterStore;
  let admin: RulesAdmin;
  const connections: NatsConnection[] = [];
  const workers: Worker[] = [];
  const answered = new Map<string, boolean>();
  const signer = createSigner(generateKey("O").seed);

  async function ask(componentId: string) {
    const reply = await client.request("wasmcloud.policy", startRequest(componentId), { timeout: 5000 });
    const answer = PolicyResponseV1.parse(JSON.parse(reply.string()));
    answered.set(answer.requestId, answer.permitted);
    return answer;
  }

  async function decisions(): Promise<DecisionV1[]> {
    const found: DecisionV1[] = [];
    for await (const stored of store.decisions.read()) found.push(DecisionV1.parse(JSON.parse(stored.text)));
    return found;
  }

  beforeAll(async () => {
    cluster = await startNatsCluster({ nodes: 3 });
    client = await connectTo(cluster.urls[0]!);
    store = await openJetStreamStore(client, { replicas: 3 });
    admin = createRulesAdmin({ store, signer });
    await admin.apply(parseRulesDocument(exampleRulesText()));
    for (const [i, url] of cluster.urls.entries()) {
      const nc = await connectTo(url);
      // Each worker's JetStream connection goes to the next node: records travel across the cluster.
      const storeNc = await connectTo(cluster.urls[(i + 1) % cluster.urls.length]!);
      connections.push(nc, storeNc);
      const worker = createWorker({
        nc,
        storeNc,
        logger: silent,
        config: { id: `w${i + 1}`, adminKeys: [signer.publicKey], replicas: 3, ...configuredWorkerKey() },
      });
      await worker.start();
      workers.push(worker);
    }
  });

  afterAll(async () => {
    await Promise.allSettled(workers.map((w) => w.stop()));
    await Promise.allSettled([...connections, client].map((c) => c?.close()));
    await cluster?.stop();
  });

  it("keeps every stream on three replicas", async () => {
    const jsm = await jetstreamManager(client);
    for (const name of ["ARBITER_RULES", "ARBITER_DECISIONS", "ARBITER_REVOCATIONS"]) {
      const info = await jsm.streams.info(name);
      expect(info.config.num_replicas, name).toBe(3);
    }
  });

  it("spreads requests over all three workers", async () => {
    for (let i = 0; i < 60; i++) expect((await ask(`spread-${i}`)).permitted).toBe(false);
    const byWorker = new Set((await decisions()).map((d) => d.worker.id));
    expect([...byWorker].sort()).toEqual(["w1", "w2", "w3"]);
  });

  it("serves a rules change on all three without a restart", async () => {
    const { revision } = await admin.apply(
      { version: 1, default: "allow", rules: [] },
      { reason: "open up" },
    );
    expect(revision).toBe(3);
    await until(() => workers.every((w) => w.revision === 3), {
      name: "all workers at revision 3",
      timeout: 10_000,
    });
    for (let i = 0; i < 60; i++) expect((await ask(`after-${i}`)).permitted).toBe(true);
    const atRevision3 = (await decisions()).filter((d) => d.revision === 3);
    expect(atRevision3.every((d) => d.permitted)).toBe(true);
    expect(new Set(atRevision3.map((d) => d.worker.id)).size).toBe(3);
  });

  it("has every answer a host received in ARBITER_DECISIONS", async () => {
    // The answers themselves; a rules change since has re-evaluated some (cause "reevaluation").
    const answers = (await decisions()).filter((d) => d.cause === "request");
    const recorded = new Map(answers.map((d) => [d.requestId, d.permitted]));
    expect(answered.size).toBe(120);
    for (const [requestId, permitted] of answered) expect(recorded.get(requestId), requestId).toBe(permitted);
  });
});
