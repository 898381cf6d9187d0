import { resourceNames } from "@arbiter/protocol";
import { parseRulesDocument } from "@arbiter/rules";
import { type ArbiterStore, createRulesAdmin, openJetStreamStore } from "@arbiter/store";
import { createSigner, generateKey } from "@arbiter/trust";
import { createWorker, type Worker } from "@arbiter/worker";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { headers, type NatsConnection } from "@nats-io/nats-core";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectTo, type NatsServerProcess, startNatsServer } from "./harness/index.js";
import { configuredWorkerKey } from "./support/arbiter.js";
import { exampleRulesText, fixtureBytes } from "./support/fixtures.js";

// The decision stream de-duplicates on a batch's first decision id (Nats-Msg-Id). Whoever gets a
// message with that id into the stream first (an attacker who learned or guessed the id and can
// publish on the decision subject: a deployment without the shipped permissions) makes
// JetStream answer the worker's own batch `duplicate: true` and store nothing. That
// acknowledgement must not count as the batch's record.

const names = resourceNames();

describe("a duplicate acknowledgement for a batch that is not the one stored", () => {
  let server: NatsServerProcess;
  let nc: NatsConnection;
  let attacker: NatsConnection;
  let worker: Worker;
  let real: ArbiterStore;
  const forgedIds: string[] = [];

  beforeAll(async () => {
    server = await startNatsServer();
    nc = await connectTo(server.url);
    attacker = await connectTo(server.url);
    const signer = createSigner(generateKey("O").seed);
    real = await openJetStreamStore(nc);
    await createRulesAdmin({ store: real, signer }).apply(parseRulesDocument(exampleRulesText()));
    const attackerJs = jetstream(attacker);
    // The real store, with the attacker's message under each batch's id landing just before it.
    const store: ArbiterStore = {
      ...real,
      decisions: {
        read: (filter) => real.decisions.read(filter),
        append: async (batch) => {
          const id = batch.decisionIds[0]!;
          const h = headers();
          h.set("Nats-Msg-Id", id);
          await attackerJs.publish(names.decisionsSubject, '{"forged":true}', { headers: h });
          forgedIds.push(id);
          return real.decisions.append(batch);
        },
      },
    };
    worker = createWorker({
      nc,
      store,
      logger: pino({ level: "silent" }),
      config: { adminKeys: [signer.publicKey], ...configuredWorkerKey() },
    });
    await worker.start();
  });

  afterAll(async () => {
    await worker?.stop();
    await real?.close();
    await attacker?.close();
    await nc?.close();
    await server?.stop();
  });

  it("leaves the request unanswered, counts a log failure and reports it", async () => {
    await expect(
      nc.request("wasmcloud.policy", fixtureBytes("start-provider"), { timeout: 2000 }),
    ).rejects.toThrow();
    expect(forgedIds).toHaveLength(1);
    expect(worker.stats()).toMatchObject({ decisions: 0, permitted: 0, logFailures: 1, unansweredOutage: 1 });
    expect(worker.health).toMatchObject({ state: "degraded", reason: expect.stringMatching(/not stored/) });

    // The stream holds the attacker's message under that id and no record of the decision.
    const jsm = await jetstreamManager(nc);
    const info = await jsm.streams.info(names.decisionsStream);
    const stored = await jsm.streams.getMessage(names.decisionsStream, { seq: info.state.last_seq });
    expect(stored?.string()).toBe('{"forged":true}');
  });
});
