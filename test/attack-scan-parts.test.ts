import { readFileSync } from "node:fs";
import { WORKER_REPLY_PREFIXES } from "@arbiter/embedded-nats";
import type { HostPolicyClient } from "@arbiter/host";
import { resourceNames } from "@arbiter/protocol";
import { createRulesAdmin, openJetStreamStore, type RulesAdmin } from "@arbiter/store";
import { createSigner, generateKey } from "@arbiter/trust";
import { createWorker, type Worker } from "@arbiter/worker";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectTo, type NatsServerProcess, startNatsServer, until } from "./harness/index.js";
import { enrolledWorkerSeed } from "./support/arbiter.js";
import { applyRules, componentBody, defaultRules, startHost, untilIndexCaughtUp } from "./support/fanout.js";
import { TEST_PASSWORDS } from "./support/permission-attacks.js";

// A stolen worker credential may publish on `arbiter.scans.>` (workers record parts there). Before
// it is taken back it stores, for the revisions to come, every part "done" and a part of no keys:
// when the next rules change is split, the taker must not take those for its own parts, or the
// overrides of every part would never be sent, long after the credential is gone.

const ACCOUNTS = readFileSync(new URL("../deploy/nats/accounts.conf", import.meta.url), "utf8");
const names = resourceNames();
const ENTRIES = 24;
const PART_SIZE = 5;

let server: NatsServerProcess;
let admin: RulesAdmin;
let worker: Worker;
let host: HostPolicyClient;
const connections: NatsConnection[] = [];

const connectAs = async (role: "admin" | "worker" | "host") => {
  const nc = await connectTo(server.url, {
    user: role === "host" ? "wasmcloud-host" : `arbiter-${role}`,
    pass: TEST_PASSWORDS[
      role === "host" ? "WASMCLOUD_HOST_PASSWORD" : `ARBITER_${role.toUpperCase()}_PASSWORD`
    ],
    ...(role === "host" ? {} : { inboxPrefix: `_INBOX_arbiter_${role}` }),
  });
  connections.push(nc);
  return nc;
};

beforeAll(async () => {
  server = await startNatsServer({ extraConfig: ACCOUNTS, env: { ...TEST_PASSWORDS } });
  const adminNc = await connectAs("admin");
  const store = await openJetStreamStore(adminNc);
  const signer = createSigner(generateKey("O").seed);
  admin = createRulesAdmin({ store, signer });
  await applyRules(admin, defaultRules("deny"));
  worker = createWorker({
    nc: await connectAs("worker"),
    logger: pino({ level: "silent" }),
    config: {
      id: "w1",
      adminKeys: [signer.publicKey],
      workerSeed: await enrolledWorkerSeed(admin, "w1"),
      inboxPrefixes: [...WORKER_REPLY_PREFIXES],
      scanPartSize: PART_SIZE,
    },
  });
  await worker.start();
  host = await startHost(await connectAs("host"));
  for (let i = 0; i < ENTRIES; i++) {
    expect((await host.evaluateStartComponent(componentBody(`c${i}`))).permitted).toBe(false);
  }
  await untilIndexCaughtUp(adminNc);
}, 60_000);

afterAll(async () => {
  await host?.stop();
  await worker?.stop();
  for (const c of connections) await c.close();
  await server?.stop();
});

describe("split re-evaluations, against a stolen worker credential", () => {
  it("records made before a revision exists do not stand in for its parts", async () => {
    const stolen = jetstream(await connectAs("worker"));
    const jsm = await jetstreamManager(connections[0]!);
    const next = (await jsm.streams.info(names.rulesStream)).state.last_seq + 1;
    const parts = Math.ceil(ENTRIES / PART_SIZE);
    const done = { worker: "w1", scanned: PART_SIZE, changed: 0, overrides: 0 };
    // It cannot know the hash of an event not yet signed: it names none, or one of its own.
    const guessed = "0".repeat(64);
    for (let part = 0; part < parts; part++) {
      await stolen.publish(
        `arbiter.scans.done.${next}.${part}`,
        JSON.stringify({ revision: next, part, ...done }),
        { msgID: `done:${next}:${part}` },
      );
      await stolen.publish(
        `arbiter.scans.done.${next}.${guessed}.${part}`,
        JSON.stringify({ revision: next, scan: guessed, part, ...done }),
        { msgID: `done:${next}:${guessed}:${part}` },
      );
    }
    await stolen.publish(
      `arbiter.scans.part.${next}.0`,
      JSON.stringify({ revision: next, part: 0, parts, keys: [] }),
      { msgID: `part:${next}:0` },
    );
    await stolen.publish(
      `arbiter.scans.part.${next}.1`,
      JSON.stringify({ revision: next, scan: guessed, part: 1, parts, keys: [] }),
      { msgID: `part:${next}:${guessed}:1` },
    );
    expect(await applyRules(admin, defaultRules("allow"))).toBe(next);
    await until(() => [...host.cacheEntries().values()].every((entry) => entry.permitted), {
      name: "every cached denial permitted, through every part",
      timeout: 20_000,
      interval: 50,
    });
    expect(host.cacheEntries().size).toBe(ENTRIES);
  }, 60_000);
});
