import { Writable } from "node:stream";
import { createLatticeHost, type HostPolicyClient, type LatticeHost, latticeEventJson } from "@arbiter/host";
import { resourceNames } from "@arbiter/protocol";
import { type ActiveIndex, BATCH_SIGNATURE_HEADER, openJetStreamActiveIndex } from "@arbiter/store";
import { generateKey } from "@arbiter/trust";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { headers } from "@nats-io/nats-core";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { until } from "./harness/index.js";
import {
  applyRules,
  componentBody,
  defaultRules,
  untilIndexCaughtUp,
  untilRevisionReevaluated,
} from "./support/fanout.js";
import { type FanoutArbiter, startFanoutArbiter } from "./support/fanout-setup.js";

// Host lifecycle pruning with real lattice events, published as a 1.x host publishes them: a host
// that stops, or whose heartbeat goes missing, leaves the active index and gets no overrides.

/** The test-shortened heartbeat timeout (wasmCloud: 30 s beats, 70 s timeout). */
const HOST_TIMEOUT_MS = 1500;

let arbiter: FanoutArbiter;
let index: ActiveIndex;
const latticeHosts: LatticeHost[] = [];
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
  arbiter = await startFanoutArbiter({
    workerConfig: { hostTimeoutMs: HOST_TIMEOUT_MS, hostPingWaitMs: 300 },
    workerLogger: pino({ level: "warn" }, sink),
    hearChanges: true,
  });
  index = await openJetStreamActiveIndex(arbiter.nc, { create: false });
}, 60_000);

afterAll(async () => {
  for (const host of latticeHosts) await host.crash().catch(() => {});
  await arbiter?.close();
});

/** Request ids heard on the changes topic so far, once the listener has caught up. */
async function overridden(): Promise<string[]> {
  await arbiter.flushHeard();
  return arbiter.heard.map((text) => (JSON.parse(text) as { requestId: string }).requestId);
}

/** A host: its policy client and its presence in the lattice (answering pings), both started. */
async function startLatticeHost(
  publicKey = generateKey("N").publicKey,
  lineage: "v1" | "v0.82" = "v1",
): Promise<{ key: string; client: HostPolicyClient; lattice: LatticeHost }> {
  const client = await arbiter.startHost({}, publicKey);
  const lattice = createLatticeHost({
    nc: await arbiter.connect("host"),
    publicKey,
    lattice: "default",
    lineage,
  });
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
  await untilIndexCaughtUp(arbiter.nc);
}

/** Applies the opposite default and waits until its overrides are out. */
async function flipRules(): Promise<void> {
  effect = effect === "deny" ? "allow" : "deny";
  await untilRevisionReevaluated(arbiter.nc, await applyRules(arbiter.admin, defaultRules(effect)));
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
    expect((await overridden()).filter((id) => stoppedIds.includes(id))).toEqual([]);
    expect(await overridden()).toEqual(expect.arrayContaining([...staying.client.requestKeys().keys()]));
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
    expect(await overridden()).toContain(newest);
    expect(await overridden()).not.toContain([...first.client.requestKeys().keys()][0]);
  });

  it("a host whose heartbeat stops is reaped after the timeout; one never seen beating is kept", async () => {
    const beating = await startLatticeHost();
    const neverBeats = await arbiter.startHost();
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
    arbiter.nc.publish("wasmbus.evt.default", latticeEventJson("host_stopped", legacy.key, { labels: {} }));
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
    const jsm = await jetstreamManager(arbiter.nc);
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
      await jetstream(arbiter.nc).publish(stored.subject, stored.data, { headers: h });
      copied = true;
    }
    expect(copied).toBe(true);
    await untilIndexCaughtUp(arbiter.nc);
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
    for (const worker of arbiter.workers) await worker.stop();
    await host.lattice.crash();
    await arbiter.startWorker("w3", { logger: pino({ level: "silent" }) });
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
