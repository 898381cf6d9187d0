import { Writable } from "node:stream";
import type { HostPolicyClient } from "@arbiter/host";
import { resourceNames } from "@arbiter/protocol";
import { type ArbiterStore, createRulesAdmin, openJetStreamStore, type RulesAdmin } from "@arbiter/store";
import { createSigner, generateKey } from "@arbiter/trust";
import { createWorker, type Worker } from "@arbiter/worker";
import { jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectTo, type NatsServerProcess, startNatsServer, until } from "./harness/index.js";
import { enrolledWorkerSeed } from "./support/arbiter.js";
import { applyRules, componentBody, defaultRules, startHost, untilIndexCaughtUp } from "./support/fanout.js";

// A deployment whose admin's store made the fan-out's consumers but not the expiries stream (made
// by an earlier release): the index goes on, only the expiry of claims is not acted on.

let server: NatsServerProcess;
let nc: NatsConnection;
let store: ArbiterStore;
let admin: RulesAdmin;
let worker: Worker;
let client: HostPolicyClient;
const logLines: string[] = [];

beforeAll(async () => {
  server = await startNatsServer();
  nc = await connectTo(server.url);
  store = await openJetStreamStore(nc);
  await (await jetstreamManager(nc)).streams.delete(resourceNames().expiriesStream);
  const signer = createSigner(generateKey("O").seed);
  admin = createRulesAdmin({ store, signer });
  await applyRules(admin, defaultRules("allow"));
  const sink = new Writable({
    write(chunk, _encoding, done) {
      logLines.push(String(chunk));
      done();
    },
  });
  worker = createWorker({
    nc: await connectTo(server.url),
    logger: pino({ level: "warn" }, sink),
    config: { adminKeys: [signer.publicKey], workerSeed: await enrolledWorkerSeed(admin) },
  });
  await worker.start();
  client = await startHost(await connectTo(server.url));
}, 60_000);

afterAll(async () => {
  await client?.stop();
  await worker?.stop();
  await store?.close();
  await nc?.close();
  await server?.stop();
});

describe("expiry timers without their stream", () => {
  it("index permits with expiring claims all the same, warn, and still override on a rules change", async () => {
    const claims = {
      publicKey: generateKey("M").publicKey,
      issuer: generateKey("A").publicKey,
      issuedAt: "1",
      expiresAt: Math.floor(Date.now() / 1000) + 3600,
      expired: false,
    };
    expect((await client.evaluateStartComponent({ ...componentBody("c"), claims })).permitted).toBe(true);
    await untilIndexCaughtUp(nc);
    await until(() => logLines.some((line) => line.includes("expiring claims are not re-evaluated")), {
      name: "the missing stream warned about",
    });
    await applyRules(admin, defaultRules("deny"));
    await until(() => [...client.cacheEntries().values()].every((e) => !e.permitted), {
      name: "the cached permit overridden by the rules change",
      timeout: 30_000,
      interval: 50,
    });
  }, 60_000);
});
