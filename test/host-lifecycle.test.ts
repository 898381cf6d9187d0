import { Writable } from "node:stream";
import { createLatticeHost, type HostPolicyClient, type LatticeHost, latticeEventJson } from "@arbiter/host";
import { resourceNames } from "@arbiter/protocol";
import {
  type ActiveIndex,
  type ArbiterStore,
  BATCH_SIGNATURE_HEADER,
  createRulesAdmin,
  openJetStreamActiveIndex,
  openJetStreamStore,
  type RulesAdmin,
} from "@arbiter/store";
import { createSigner, generateKey } from "@arbiter/trust";
import { createWorker, type Worker } from "@arbiter/worker";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { headers, type NatsConnection, type Subscription } from "@nats-io/nats-core";
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

// Host lifecycle pruning with real lattice events, published as a 1.x host publishes them: a host
// that stops, or whose heartbeat goes missing, leaves the active index and gets no overrides.

/** The test-shortened heartbeat timeout (wasmCloud: 30 s beats, 70 s timeout). */
const HOST_TIMEOUT_MS = 1500;

let server: NatsServerProcess;
let nc: NatsConnection;
let store: ArbiterStore;
let admin: RulesAdmin;
let signerKey: string;
let index: ActiveIndex;
const connections: NatsConnection[] = [];
const workers: Worker[] = [];
const policyClients: HostPolicyClient[] = [];
const latticeHosts: LatticeHost[] = [];
/** Request ids heard on the changes topic. */
const overridden: string[] = [];
let listener: Subscription;
/** What the workers log (warnings and worse). */
const logLines: string[] = [];
const sink = new Writable({
  write(chunk, _encoding, done) {
    logLines.push(String(chunk));
    done();
  },
});
/** The rules now in force, flipped by each `flipRules()`. */
let effect: "allow" | "deny" = "deny";

beforeAll(async () => {
  server = await startNatsServer();
  nc = await connectTo(server.url);
  connections.push(nc);
  store = await openJetStreamStore(nc);
  const signer = createSigner(generateKey("O").seed);
  admin = createRulesAdmin({ store, signer });
  signerKey = signer.publicKey;
  await applyRules(admin, defaultRules("deny"));
  for (const name of ["w1", "w2"]) {
    const workerNc = await connectTo(server.url);
    connections.push(workerNc);
    const worker = createWorker({
      nc: workerNc,
      logger: pino({ level: "warn" }, sink),
      config: {
        id: name,
        adminKeys: [signer.publicKey],
        workerSeed: await enrolledWorkerSeed(admin, name),
        hostTimeoutMs: HOST_TIMEOUT_MS,
        hostPingWaitMs: 300,
      },
    });
    await worker.start();
    workers.push(worker);
  }
  index = await openJetStreamActiveIndex(nc, { create: false });
  listener = nc.subscribe("wasmcloud.policy.changes", {
    callback: (_err, m) => {
      overridden.push((m.json() as { requestId: string }).requestId);
    },
  });
  await nc.flush();
}, 60_000);

afterAll(async () => {
  for (const client of policyClients) await client.stop();
  for (const host of latticeHosts) await host.crash().catch(() => {});
  for (const worker of workers) await worker.stop();
  listener?.unsubscribe();
  for (const c of connections) await c.close();
  await server?.stop();
});

/** A host: its policy client and its presence in the lattice (answering pings), both started. */
async function startLatticeHost(
  publicKey = generateKey("N").publicKey,
  lineage: "v1" | "v0.82" = "v1",
): Promise<{ key: string; client: HostPolicyClient; lattice: LatticeHost }> {
  const hostNc = await connectTo(server.url);
  connections.push(hostNc);
  const client = await startHost(hostNc, {}, publicKey);
  policyClients.push(client);
  const lattice = createLatticeHost({ nc: hostNc, publicKey, lattice: "default", lineage });
  await lattice.start();
  latticeHosts.push(lattice);
  return { key: publicKey, client, lattice };
}

async function entriesOf(host: string) {
  const found = [];
  for await (const entry of index.entries({ lattice: "default", host })) found.push(entry);
  return found;
}

async function evaluate(client: HostPolicyClient, names: readonly string[]) {
  for (const name of names) {
    const answer = await client.evaluateStartComponent(componentBody(name));
    expect(answer.failure).toBeUndefined();
  }
  await untilIndexCaughtUp(nc);
}

/** Applies the opposite default and waits until its overrides are out. */
async function flipRules(): Promise<void> {
  effect = effect === "deny" ? "allow" : "deny";
  await untilRevisionReevaluated(nc, await applyRules(admin, defaultRules(effect)));
}

describe("host lifecycle pruning", () => {
  it("a host's host_stopped removes its entries, and it gets no override on the next rules change", async () => {
    const stopping = await startLatticeHost();
    const staying = await startLatticeHost();
    await evaluate(stopping.client, ["a1", "a2"]);
    await evaluate(staying.client, ["b1"]);
    expect(await entriesOf(stopping.key)).toHaveLength(2);
    await stopping.lattice.stop();
    await until(async () => (await entriesOf(stopping.key)).length === 0, {
      name: "the stopped host's entries gone from the index",
      timeout: 15_000,
      interval: 50,
    });
    await flipRules();
    const stoppedIds = [...stopping.client.requestKeys().keys()];
    expect(overridden.filter((id) => stoppedIds.includes(id))).toEqual([]);
    expect(overridden).toEqual(expect.arrayContaining([...staying.client.requestKeys().keys()]));
    expect(await entriesOf(staying.key)).toHaveLength(1);
  });

  it("a host that reappears with new requests starts clean, and a newer request replaces the entry", async () => {
    const first = await startLatticeHost();
    await evaluate(first.client, ["r1"]);
    await first.lattice.stop();
    await until(async () => (await entriesOf(first.key)).length === 0, {
      name: "the stopped host's entries gone",
      timeout: 15_000,
      interval: 50,
    });
    // The same key started again: an empty cache, new request ids.
    const again = await startLatticeHost(first.key);
    await evaluate(again.client, ["r1"]);
    const [entry] = await entriesOf(first.key);
    const newId = [...again.client.requestKeys().keys()][0];
    expect(entry?.requestId).toBe(newId);
    // A third start of the host, the same component: its newer request is the entry.
    const third = await startLatticeHost(first.key);
    await evaluate(third.client, ["r1"]);
    const newest = [...third.client.requestKeys().keys()][0];
    const entries = await entriesOf(first.key);
    expect(entries.map((e) => e.requestId)).toEqual([newest]);
    await flipRules();
    expect(overridden).toContain(newest);
    expect(overridden).not.toContain([...first.client.requestKeys().keys()][0]);
  });

  it("a host whose heartbeat stops is reaped after the timeout; one never seen beating is kept", async () => {
    const beating = await startLatticeHost();
    const silentHostNc = await connectTo(server.url);
    connections.push(silentHostNc);
    const neverBeats = await startHost(silentHostNc);
    policyClients.push(neverBeats);
    await evaluate(beating.client, ["h1", "h2"]);
    await evaluate(neverBeats, ["n1"]);
    await beating.lattice.heartbeat();
    await until(async () => (await index.getHost("default", beating.key))?.record.lastSeenAt != null, {
      name: "the heartbeat recorded",
      interval: 50,
    });
    expect(await entriesOf(beating.key)).toHaveLength(2);
    // A crash: no host_stopped, no more heartbeats, no ping answers.
    await beating.lattice.crash();
    // The entries go first, then the host's record says it was pruned.
    await until(
      async () =>
        (await entriesOf(beating.key)).length === 0 &&
        (await index.getHost("default", beating.key))?.record.pruned === true,
      { name: "the silent host reaped after its heartbeat timeout", timeout: 20_000, interval: 100 },
    );
    const record = (await index.getHost("default", beating.key))?.record;
    expect(record?.stoppedAt).not.toBeNull();
    expect(record?.pruned).toBe(true);
    const hostKey = (await neverBeatsKey(neverBeats)) ?? "";
    expect(await entriesOf(hostKey)).toHaveLength(1);
    // It was only cut off: back, beating, with the cache it had. Its entries are gone, so say so.
    await beating.lattice.heartbeat();
    await until(
      () => logLines.some((line) => line.includes(beating.key) && line.includes("without having restarted")),
      {
        name: "the worker reports the reaped host back without a restart",
        interval: 50,
      },
    );
  });

  it("a host that still answers pings is not reaped when its heartbeats stop", async () => {
    const quiet = await startLatticeHost();
    await evaluate(quiet.client, ["q1"]);
    await quiet.lattice.heartbeat();
    const seenAt = async () => (await index.getHost("default", quiet.key))?.record.lastSeenAt ?? null;
    await until(async () => (await seenAt()) !== null, { name: "the heartbeat recorded", interval: 50 });
    const first = await seenAt();
    // Past the timeout the sweep pings it; it answers, so it is noted as seen again and kept.
    await until(async () => (await seenAt()) !== first && quiet.lattice.pingsAnswered > 0, {
      name: "the sweep pinged the quiet host and it answered",
      timeout: 20_000,
      interval: 100,
    });
    expect(await entriesOf(quiet.key)).toHaveLength(1);
  });

  it("prunes on a host_stopped published only on the 0.82 subject", async () => {
    const legacy = await startLatticeHost(undefined, "v0.82");
    await evaluate(legacy.client, ["l1"]);
    await legacy.lattice.crash();
    nc.publish("wasmbus.evt.default", latticeEventJson("host_stopped", legacy.key, { labels: {} }));
    await until(async () => (await entriesOf(legacy.key)).length === 0, {
      name: "entries of the host stopped on wasmbus.evt.default gone",
      timeout: 15_000,
      interval: 50,
    });
  });

  it("a decision of a pruned host projected late does not bring its entry back", async () => {
    const late = await startLatticeHost();
    await evaluate(late.client, ["z1"]);
    const names = resourceNames();
    const jsm = await jetstreamManager(nc);
    const last = (await jsm.streams.info(names.decisionsStream)).state.last_seq;
    let copied = false;
    for (let seq = last; seq > 0 && !copied; seq--) {
      const stored = await jsm.streams.getMessage(names.decisionsStream, { seq });
      if (stored === null || !stored.string().includes(late.key)) continue;
      await late.lattice.stop();
      await until(async () => (await entriesOf(late.key)).length === 0, {
        name: "the stopped host's entries gone",
        timeout: 15_000,
        interval: 50,
      });
      // The very message again, as a redelivery would bring it: signed, decided before the stop.
      const h = headers();
      h.set(BATCH_SIGNATURE_HEADER, stored.header.get(BATCH_SIGNATURE_HEADER));
      await jetstream(nc).publish(stored.subject, stored.data, { headers: h });
      copied = true;
    }
    expect(copied).toBe(true);
    await untilIndexCaughtUp(nc);
    expect(await entriesOf(late.key)).toEqual([]);
  });
});

describe("host records in the active bucket", () => {
  it("outlive the workers: a worker started after them reaps a host the others heard beating", async () => {
    const host = await startLatticeHost();
    await evaluate(host.client, ["s1"]);
    await host.lattice.heartbeat();
    await until(async () => (await index.getHost("default", host.key))?.record.lastSeenAt != null, {
      name: "the heartbeat recorded",
      interval: 50,
    });
    for (const worker of workers.splice(0)) await worker.stop();
    await host.lattice.crash();
    const workerNc = await connectTo(server.url);
    connections.push(workerNc);
    const fresh = createWorker({
      nc: workerNc,
      logger: pino({ level: "silent" }),
      config: {
        id: "w3",
        adminKeys: [signerKey],
        workerSeed: await enrolledWorkerSeed(admin, "w3"),
        hostTimeoutMs: HOST_TIMEOUT_MS,
        hostPingWaitMs: 300,
      },
    });
    await fresh.start();
    workers.push(fresh);
    await until(async () => (await entriesOf(host.key)).length === 0, {
      name: "the new worker reaps the silent host",
      timeout: 20_000,
      interval: 100,
    });
  });
});

/** The host key a reference client sends (from its own first request's record in the index). */
async function neverBeatsKey(client: HostPolicyClient): Promise<string | null> {
  const requestId = [...client.requestKeys().keys()][0];
  for await (const entry of index.entries()) if (entry.requestId === requestId) return entry.host;
  return null;
}
