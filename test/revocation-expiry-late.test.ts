import type { HostPolicyClient } from "@arbiter/host";
import { resourceNames } from "@arbiter/protocol";
import { type ArbiterStore, createRulesAdmin, openJetStreamStore } from "@arbiter/store";
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

// A permit whose claims have expired by the time the index takes it (here: decided by a worker
// whose clock is an hour behind and which takes no part in the fan-out, indexed later by another):
// its timer may have fired already, so the projection re-evaluates it as it indexes it.

const EXPIRED = "component claims have expired";

let server: NatsServerProcess;
let nc: NatsConnection;
let store: ArbiterStore;
const workers: Worker[] = [];
const connections: NatsConnection[] = [];
let client: HostPolicyClient;

beforeAll(async () => {
  server = await startNatsServer();
  nc = await connectTo(server.url);
  store = await openJetStreamStore(nc);
  const signer = createSigner(generateKey("O").seed);
  const admin = createRulesAdmin({ store, signer });
  await applyRules(
    admin,
    defaultRules("allow", [
      { id: "no-expired-claims", effect: "deny", when: "claims != null && claims.expired", message: EXPIRED },
    ]),
  );
  // Both enrolled first, and every revision re-evaluated by an on-time worker that then stops: a
  // rules revision still to scan after the decision would re-evaluate it anyway.
  const seeds = [await enrolledWorkerSeed(admin), await enrolledWorkerSeed(admin)];
  const onTime = (id: string) =>
    createWorker({
      nc: connections[0]!,
      logger: pino({ level: "silent" }),
      config: { id, adminKeys: [signer.publicKey], workerSeed: seeds[1] },
    });
  connections.push(await connectTo(server.url));
  const first = onTime("first");
  await first.start();
  await untilRevisionReevaluated(
    nc,
    (await jetstreamManager(nc).then((j) => j.streams.info("ARBITER_RULES"))).state.last_seq,
  );
  await first.stop();
  const behind = createWorker({
    nc: await connectTo(server.url),
    logger: pino({ level: "silent" }),
    clock: () => new Date(Date.now() - 3_600_000),
    config: { id: "behind", adminKeys: [signer.publicKey], workerSeed: seeds[0], revoke: false },
  });
  await behind.start();
  workers.push(behind);
  client = await startHost(await connectTo(server.url));
  const expiresAt = Math.floor(Date.now() / 1000) - 5;
  const claims = {
    publicKey: generateKey("M").publicKey,
    issuer: generateKey("A").publicKey,
    issuedAt: "1",
    expiresAt,
    expired: false,
  };
  expect((await client.evaluateStartComponent({ ...componentBody("late"), claims })).permitted).toBe(true);
  // The on-time worker is back once the decision is recorded, and indexes it.
  const second = onTime("second");
  await second.start();
  workers.push(second);
}, 60_000);

afterAll(async () => {
  await client?.stop();
  for (const worker of workers) await worker.stop();
  for (const c of connections) await c.close();
  await store?.close();
  await nc?.close();
  await server?.stop();
});

describe("a permit indexed after its claims expired", () => {
  it("is overridden as it is indexed, with no timer", async () => {
    await untilIndexCaughtUp(nc);
    await until(
      () => [...client.cacheEntries().values()].every((e) => !e.permitted && e.message === EXPIRED),
      {
        name: "the late permit overridden",
        timeout: 30_000,
        interval: 50,
      },
    );
    expect(client.stats().overridesApplied).toBe(1);
    const info = await (await jetstreamManager(nc)).streams.info(resourceNames().expiriesStream);
    expect(info.state.messages).toBe(0);
  });
});
