import { PolicyResponseV1 } from "@arbiter/protocol";
import { parseRulesDocument } from "@arbiter/rules";
import { createRulesAdmin, openJetStreamStore } from "@arbiter/store";
import { createSigner, generateKey } from "@arbiter/trust";
import { createWorker, type Worker } from "@arbiter/worker";
import type { NatsConnection } from "@nats-io/nats-core";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectTo, type NatsServerProcess, startNatsServer, until } from "./harness/index.js";
import { configuredWorkerKey } from "./support/arbiter.js";
import { exampleRulesText, fixtureBytes } from "./support/fixtures.js";

describe("a worker whose NATS server crashes and comes back", () => {
  let server: NatsServerProcess;
  let workerNc: NatsConnection;
  let worker: Worker;
  const signer = createSigner(generateKey("O").seed);
  const fastReconnect = { reconnectTimeWait: 100, maxReconnectAttempts: -1 };

  beforeAll(async () => {
    server = await startNatsServer();
    workerNc = await connectTo(server.url, fastReconnect);
    await createRulesAdmin({ store: await openJetStreamStore(workerNc), signer }).apply(
      parseRulesDocument(exampleRulesText()),
    );
    worker = createWorker({
      nc: workerNc,
      logger: pino({ level: "silent" }),
      config: { adminKeys: [signer.publicKey], ...configuredWorkerKey() },
    });
    await worker.start();
  });

  afterAll(async () => {
    await worker?.stop();
    await workerNc?.close();
    await server?.stop();
  });

  it("permits again after the restart, with its decisions and rules intact, and follows new rules", async () => {
    await using before = await connectTo(server.url);
    // The example rules permit a wasmCloud-signed provider: a worker that lost its rules (or its
    // decision log) would deny it, so only a worker that really recovered passes.
    const first = await before.request("wasmcloud.policy", fixtureBytes("start-provider"), {
      timeout: 5000,
    });
    expect(PolicyResponseV1.parse(JSON.parse(first.string())).permitted).toBe(true);

    await server.kill();
    await server.restart();

    await using client = await connectTo(server.url);
    const again = await until(
      async () => {
        const reply = await client.request("wasmcloud.policy", fixtureBytes("start-provider"), {
          timeout: 2000,
        });
        return PolicyResponseV1.parse(JSON.parse(reply.string()));
      },
      { name: "an answer after the restart", timeout: 30_000 },
    );
    expect(again).toMatchObject({ permitted: true, message: "signed by wasmCloud" });
    expect(worker.revision).toBe(2);
    await until(() => worker.health.state === "ready", { name: "the worker ready after the restart" });

    const store = await openJetStreamStore(client);
    let recorded = 0;
    for await (const _ of store.decisions.read()) recorded++;
    expect(recorded).toBeGreaterThanOrEqual(2);

    const { revision } = await createRulesAdmin({ store, signer }).apply({
      version: 1,
      default: "allow",
      rules: [],
    });
    expect(revision).toBe(3);
    await until(() => worker.revision === 3, { name: "the worker following revision 3", timeout: 30_000 });
    // Denied under the example rules, permitted under the new ones.
    const reply = await client.request("wasmcloud.policy", fixtureBytes("start-component"), {
      timeout: 5000,
    });
    expect(PolicyResponseV1.parse(JSON.parse(reply.string())).permitted).toBe(true);
  });
});
