import { PolicyResponseV1, resourceNames } from "@arbiter/protocol";
import { parseRulesDocument } from "@arbiter/rules";
import { createRulesAdmin, openJetStreamStore } from "@arbiter/store";
import { createSigner, generateKey } from "@arbiter/trust";
import { createWorker, type Worker } from "@arbiter/worker";
import { jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectTo, type NatsServerProcess, startNatsServer } from "./harness/index.js";
import { exampleRulesText, fixtureBytes } from "./support/fixtures.js";

describe("when the decision log is unavailable", () => {
  let server: NatsServerProcess;
  let nc: NatsConnection;
  let worker: Worker;
  const signer = createSigner(generateKey("O").seed);

  async function ask() {
    const reply = await nc.request("wasmcloud.policy", fixtureBytes("start-provider"), { timeout: 5000 });
    return PolicyResponseV1.parse(JSON.parse(reply.string()));
  }

  beforeAll(async () => {
    server = await startNatsServer();
    nc = await connectTo(server.url);
    await createRulesAdmin({ store: await openJetStreamStore(nc), signer }).apply(
      parseRulesDocument(exampleRulesText()),
    );
    worker = createWorker({
      nc,
      logger: pino({ level: "silent" }),
      config: { adminKeys: [signer.publicKey] },
    });
    await worker.start();
  });

  afterAll(async () => {
    await worker?.stop();
    await nc?.close();
    await server?.stop();
  });

  it("denies what it would permit, says why, and permits again once the log is back", async () => {
    expect((await ask()).permitted).toBe(true);

    const jsm = await jetstreamManager(nc);
    const decisions = await jsm.streams.info(resourceNames().decisionsStream);
    await jsm.streams.delete(decisions.config.name);
    const denied = await ask();
    expect(denied).toMatchObject({
      permitted: false,
      message: expect.stringMatching(/decision log is unavailable/),
    });
    expect(worker.stats().logFailures).toBe(1);
    expect(worker.status).toBe("ready");

    await jsm.streams.add(decisions.config);
    expect((await ask()).permitted).toBe(true);
  });
});
