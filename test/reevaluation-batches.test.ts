import { resourceNames } from "@arbiter/protocol";
import {
  type ArbiterStore,
  BATCH_CAUSE_HEADER,
  createRulesAdmin,
  openJetStreamActiveIndex,
  openJetStreamStore,
  REEVALUATION_BATCH_CAUSE,
  type RulesAdmin,
} from "@arbiter/store";
import { createSigner, generateKey } from "@arbiter/trust";
import { createWorker, type Worker } from "@arbiter/worker";
import { jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectTo, type NatsServerProcess, startNatsServer, until } from "./harness/index.js";
import { enrolledWorkerSeed } from "./support/arbiter.js";
import {
  applyRules,
  componentBody,
  defaultRules,
  startHost,
  untilIndexCaughtUp,
  untilRevisionReevaluated,
} from "./support/fanout.js";

// The re-evaluation's decisions are stored as batches that say so in a header, so that the
// active index's projection (which never indexes a re-evaluation) leaves them unread; the revoker
// puts the changed entries itself.

let server: NatsServerProcess;
let nc: NatsConnection;
let store: ArbiterStore;
let admin: RulesAdmin;
let worker: Worker;
const connections: NatsConnection[] = [];

beforeAll(async () => {
  server = await startNatsServer();
  nc = await connectTo(server.url);
  store = await openJetStreamStore(nc);
  const signer = createSigner(generateKey("O").seed);
  admin = createRulesAdmin({ store, signer });
  await applyRules(admin, defaultRules("deny"));
  const workerNc = await connectTo(server.url);
  connections.push(workerNc);
  worker = createWorker({
    nc: workerNc,
    logger: pino({ level: "silent" }),
    config: { id: "w1", adminKeys: [signer.publicKey], workerSeed: await enrolledWorkerSeed(admin, "w1") },
  });
  await worker.start();
}, 60_000);

afterAll(async () => {
  await worker?.stop();
  for (const c of connections) await c.close();
  await store?.close();
  await nc?.close();
  await server?.stop();
});

describe("re-evaluation batches", () => {
  it("are marked as re-evaluations in the decision log, the request batches not, and the index holds the new outcomes", async () => {
    const hostNc = await connectTo(server.url);
    connections.push(hostNc);
    const host = await startHost(hostNc);
    for (let i = 0; i < 5; i++) {
      expect((await host.evaluateStartComponent(componentBody(`c${i}`))).permitted).toBe(false);
    }
    await untilIndexCaughtUp(nc);
    const revision = await applyRules(admin, defaultRules("allow"));
    await untilRevisionReevaluated(nc, revision);
    await until(() => [...host.cacheEntries().values()].every((e) => e.permitted), {
      name: "every cached denial permitted",
      timeout: 30_000,
      interval: 50,
    });

    const names = resourceNames();
    const jsm = await jetstreamManager(nc);
    const last = (await jsm.streams.info(names.decisionsStream)).state.last_seq;
    const causes = { request: 0, reevaluation: 0, marked: 0, unmarked: 0 };
    for (let seq = 1; seq <= last; seq++) {
      const message = await jsm.streams.getMessage(names.decisionsStream, { seq });
      if (message === null) throw new Error(`decision message ${seq} is not there`);
      const lines = message.string().split("\n");
      const kinds = new Set(lines.map((line) => (JSON.parse(line) as { cause: string }).cause));
      expect(kinds.size).toBe(1);
      const marked = message.header.get(BATCH_CAUSE_HEADER) === REEVALUATION_BATCH_CAUSE;
      if (kinds.has("reevaluation")) {
        causes.reevaluation += lines.length;
        expect(marked).toBe(true);
        causes.marked++;
      } else {
        causes.request += lines.length;
        expect(message.header.get(BATCH_CAUSE_HEADER)).toBe("");
        causes.unmarked++;
      }
    }
    expect(causes.request).toBe(5);
    expect(causes.reevaluation).toBe(5);
    expect(causes.marked).toBeGreaterThan(0);

    const index = await openJetStreamActiveIndex(nc, { create: false });
    try {
      let entries = 0;
      for await (const entry of index.entries()) {
        entries++;
        expect(entry).toMatchObject({ permitted: true, revision });
      }
      expect(entries).toBe(5);
    } finally {
      await index.close();
    }
  }, 60_000);
});
