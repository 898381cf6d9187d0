import { WORKER_REPLY_PREFIXES } from "@arbiter/embedded-nats";
import { createLatticeHost, type HostPolicyClient, type LatticeHost, latticeEventJson } from "@arbiter/host";
import { openJetStreamActiveIndex } from "@arbiter/store";
import { generateKey } from "@arbiter/trust";
import { createWorker, type Worker } from "@arbiter/worker";
import type { NatsConnection } from "@nats-io/nats-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { until } from "./harness/index.js";
import { enrolledWorkerSeed } from "./support/arbiter.js";
import { applyRules, componentBody, defaultRules, untilIndexCaughtUp } from "./support/fanout.js";
import { type FanoutArbiter, startFanoutArbiter } from "./support/fanout-setup.js";
import { captureLog } from "./support/log-capture.js";
import { type PausableProxy, startPausableProxy } from "./support/pausable-proxy.js";

// A worker pinged the lattice and waited for the answers by its own clock: a live host's answer
// that reached the server in time but was read late by the worker (its link slow, or its
// connection behind a flood of hosts' requests or answers) counted as that host's silence, and a
// forged host_stopped pruned it. The wait is now the server's: at its end a round trip on the
// connection delivers every answer the server had for it first. Here the worker's link is held
// from the moment the ping is out until past the wait, the live host answering at once.

let arbiter: FanoutArbiter;
let workerLink: PausableProxy;
let workerNc: NatsConnection;
let worker: Worker;
let honest: HostPolicyClient;
let presence: LatticeHost;
const honestKey = generateKey("N").publicKey;
const log = captureLog("info");

beforeAll(async () => {
  arbiter = await startFanoutArbiter({
    rules: defaultRules("allow"),
    workers: [],
    shippedPermissions: true,
    workerLogger: log.logger,
  });
  workerLink = await startPausableProxy(arbiter.server.url);
  // The worker's own connection, the one its pings go out and come back on, through the relay.
  workerNc = await arbiter.connect("worker", workerLink.url);
  worker = createWorker({
    nc: workerNc,
    storeNc: await arbiter.connect("worker"),
    logger: log.logger,
    config: {
      id: "w1",
      adminKeys: [arbiter.signer.publicKey],
      workerSeed: await enrolledWorkerSeed(arbiter.admin, "w1"),
      inboxPrefixes: [...WORKER_REPLY_PREFIXES],
      hostPingWaitMs: 3000,
    },
  });
  await worker.start();
  honest = await arbiter.startHost({}, honestKey);
  presence = createLatticeHost({
    nc: await arbiter.connect("host"),
    publicKey: honestKey,
    lattice: "default",
  });
  await presence.start();
}, 60_000);

afterAll(async () => {
  await presence?.crash().catch(() => {});
  await worker?.stop();
  await arbiter?.close();
  await workerLink?.[Symbol.asyncDispose]();
});

describe("a ping whose answers the worker reads late", () => {
  it("prunes no host: a forged host_stopped leaves the live host's entries, and its revocation comes", async () => {
    expect((await honest.evaluateStartComponent(componentBody("payments"))).permitted).toBe(true);
    await untilIndexCaughtUp(arbiter.nc);
    const index = await openJetStreamActiveIndex(arbiter.nc, { create: false });
    const honestEntries = async () => {
      let count = 0;
      for await (const _ of index.entries({ lattice: "default", host: honestKey })) count++;
      return count;
    };
    expect(await honestEntries()).toBe(1);

    const attacker = await arbiter.connect("host");
    // The worker's link is held once the ping is out; the live host answers at once.
    let answeredAt = 0;
    attacker.subscribe("wasmbus.ctl.v1.default.host.ping", {
      max: 1,
      callback: () => {
        workerLink.pause();
      },
    });
    await attacker.flush();
    attacker.publish(
      "wasmbus.evt.default.host_stopped",
      latticeEventJson("host_stopped", honestKey, { labels: {} }),
    );
    await attacker.flush();
    await until(() => presence.pingsAnswered > 0, {
      name: "the live host answered the ping",
      timeout: 15_000,
    });
    answeredAt = Date.now();
    const messages = () => log.lines().map((line) => String(line["msg"]));
    const pruned = () => messages().some((m) => m.includes("host pruned from the active index"));
    // The worker's wait of 3 s ends meanwhile, by its clock.
    await until(() => pruned() || Date.now() - answeredAt > 4000, {
      name: "the worker's wait over, its link still held",
      timeout: 15_000,
    });
    workerLink.resume();
    await until(
      () => messages().some((m) => /host pruned from the active index|still answer pings/.test(m)),
      {
        name: "the worker done with the forged stop",
        timeout: 30_000,
      },
    );
    expect(messages().filter((m) => m.includes("host pruned from the active index"))).toEqual([]);
    expect(await honestEntries()).toBe(1);

    await applyRules(arbiter.admin, defaultRules("deny"));
    await until(() => [...honest.cacheEntries().values()].every((entry) => !entry.permitted), {
      name: "the live host's cached permit revoked by an override",
      timeout: 30_000,
    });
  }, 120_000);
});
