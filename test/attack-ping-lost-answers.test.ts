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

// A worker prunes a host on a host_stopped only when the host does not answer its ping, and took a
// ping that heard nothing for a host that is gone. Every connection of a host credential may
// answer every ping, each with up to max_payload: 120 of them answering one ping with a megabyte
// each made nats-server cut the worker's connection off as a slow consumer (more than 64 MB
// waiting for it), dropping whatever answers were queued behind theirs, the live host's too
// (tried). The ping then heard nothing of that host, and a forged host_stopped pruned it: no
// override would reach it again. Here the break is made with a relay on the worker's link, the
// live host's answer sent while it is down.

let arbiter: FanoutArbiter;
let workerLink: PausableProxy;
let hostLink: PausableProxy;
let workerNc: NatsConnection;
let worker: Worker;
let honest: HostPolicyClient;
let presence: LatticeHost;
const honestKey = generateKey("N").publicKey;
const log = captureLog("info");
const breaks: string[] = [];

beforeAll(async () => {
  arbiter = await startFanoutArbiter({
    rules: defaultRules("allow"),
    workers: [],
    shippedPermissions: true,
    workerLogger: log.logger,
  });
  workerLink = await startPausableProxy(arbiter.server.url);
  hostLink = await startPausableProxy(arbiter.server.url);
  // The worker's own connection, the one its pings go out and come back on, through the relay.
  workerNc = await arbiter.connect("worker", workerLink.url);
  void (async () => {
    for await (const status of workerNc.status()) breaks.push(status.type);
  })();
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
    nc: await arbiter.connect("host", hostLink.url),
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
  await hostLink?.[Symbol.asyncDispose]();
});

describe("a ping out while the worker's connection breaks", () => {
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
    // The live host is slow to answer; the attacker breaks the worker's link once the ping is out.
    hostLink.pause();
    attacker.subscribe("wasmbus.ctl.v1.default.host.ping", {
      max: 1,
      callback: () => {
        workerLink.pause();
        workerLink.drop();
      },
    });
    await attacker.flush();
    attacker.publish(
      "wasmbus.evt.default.host_stopped",
      latticeEventJson("host_stopped", honestKey, { labels: {} }),
    );
    await attacker.flush();
    await until(() => breaks.includes("disconnect"), { name: "the worker's link broken", timeout: 15_000 });
    hostLink.resume();
    await until(() => presence.pingsAnswered > 0, {
      name: "the live host answered the ping",
      timeout: 15_000,
    });
    workerLink.resume();
    await until(() => breaks.includes("reconnect"), { name: "the worker connected again", timeout: 30_000 });

    const messages = () => log.lines().map((line) => String(line["msg"]));
    await until(() => messages().some((m) => /host pruned from the active index|connection broke/.test(m)), {
      name: "the worker done with the forged stop",
      timeout: 30_000,
    });
    expect(messages().filter((m) => m.includes("host pruned from the active index"))).toEqual([]);
    expect(await honestEntries()).toBe(1);

    await applyRules(arbiter.admin, defaultRules("deny"));
    await until(() => [...honest.cacheEntries().values()].every((entry) => !entry.permitted), {
      name: "the live host's cached permit revoked by an override",
      timeout: 30_000,
    });
  }, 120_000);
});
