import type { ActiveDecisionV1 } from "@arbiter/protocol";
import {
  type ActiveIndex,
  activeEntryKey,
  type IndexMirror,
  type MirrorView,
  openIndexMirror,
  openJetStreamActiveIndex,
} from "@arbiter/store";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/nats-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectTo, type NatsServerProcess, startNatsServer, until } from "./harness/index.js";
import { startPausableProxy } from "./support/pausable-proxy.js";

// A worker's mirror of the active index, fed by the bucket's republished writes: what a scan reads
// from it must be what the bucket holds, after writes, deletes, purges nothing republished, and a
// broken link that loses writes.

let server: NatsServerProcess;
let nc: NatsConnection;
let run = 0;
const closing: (() => Promise<void> | void)[] = [];

beforeAll(async () => {
  server = await startNatsServer();
  nc = await connectTo(server.url);
});

afterAll(async () => {
  for (const close of closing.reverse()) await close();
  await nc?.close();
  await server?.stop();
});

function entry(host: string, cacheKey: string, overrides: Partial<ActiveDecisionV1> = {}): ActiveDecisionV1 {
  return {
    lattice: "default",
    host,
    cacheKey,
    requestId: `${host}-${cacheKey}`,
    kind: "startComponent",
    permitted: false,
    message: "denied",
    revision: 2,
    decisionId: `d-${host}-${cacheKey}`,
    seq: 1,
    evaluatedAt: "2026-01-01T00:00:00.000Z",
    rejection: null,
    request: { requestId: `${host}-${cacheKey}` },
    trust: { verified: false, reasons: [] },
    expiresAt: null,
    ...overrides,
  };
}

async function collect<T>(iterable: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of iterable) out.push(item);
  return out;
}

async function fixture(): Promise<{ prefix: string; index: ActiveIndex }> {
  const prefix = `mirror${++run}`;
  const index = await openJetStreamActiveIndex(nc, { prefix });
  closing.push(() => index.close());
  for (let h = 0; h < 5; h++) {
    for (let c = 0; c < 20; c++) await index.put(entry(`N${h}`, `c${c}`));
  }
  await index.claimRequestId("claimed", entry("N0", "c0"));
  return { prefix, index };
}

async function openMirror(prefix: string, mirrorNc: NatsConnection = nc): Promise<IndexMirror> {
  const mirror = await openIndexMirror(mirrorNc, { prefix, timeoutMs: 5000 });
  closing.push(() => mirror.close());
  return mirror;
}

async function viewOf(mirror: IndexMirror): Promise<MirrorView> {
  const view = await mirror.view();
  if (typeof view === "string") throw new Error(`the mirror gave no view: ${view}`);
  return view;
}

/** What the view holds, and what the bucket holds read from the server, as sorted request ids. */
async function both(
  mirror: IndexMirror,
  index: ActiveIndex,
): Promise<{ mirrored: string[]; stored: string[] }> {
  const view = await viewOf(mirror);
  const mirrored = (await collect(view.entriesOf(view.keys()))).map((e) => `${e.requestId}:${e.permitted}`);
  const stored = (await collect(index.entries())).map((e) => `${e.requestId}:${e.permitted}`);
  return { mirrored: mirrored.sort(), stored: stored.sort() };
}

describe("the index mirror", () => {
  it("holds the bucket as it is: entries written before it opened, and every write since", async () => {
    const { prefix, index } = await fixture();
    const mirror = await openMirror(prefix);
    let seen = await both(mirror, index);
    expect(seen.mirrored).toHaveLength(100);
    expect(seen.mirrored).toEqual(seen.stored);
    expect((await viewOf(mirror)).keys().sort()).toEqual(await index.keys());

    await index.put(entry("N9", "new"));
    await index.put(entry("N0", "c1", { requestId: "N0-c1-again", seq: 7 }));
    await index.delete(entry("N1", "c1"));
    const [read] = await collect(index.entriesOf([activeEntryKey(entry("N2", "c2"))]));
    if (read === undefined) throw new Error("entry not read back");
    expect(await index.replace({ ...read, permitted: true }, read)).toBe(true);
    seen = await both(mirror, index);
    expect(seen.mirrored).toEqual(seen.stored);
    expect(seen.mirrored).toContain("N9-new:false");
    expect(seen.mirrored).toContain("N0-c1-again:false");
    expect(seen.mirrored).toContain("N2-c2:true");
    expect(seen.mirrored).not.toContain("N1-c1:false");
    expect(mirror.stats.reloads).toBe(1);
  });

  it("prepares entries ahead of the next scan, but not while a scan holds a view", async () => {
    const { prefix, index } = await fixture();
    const prepared: string[] = [];
    const mirror = await openIndexMirror(nc, {
      prefix,
      timeoutMs: 5000,
      prepare: (e) => prepared.push(e.requestId),
    });
    closing.push(() => mirror.close());
    await until(() => prepared.length === 100, {
      name: "the 100 entries read at opening prepared",
      timeout: 10_000,
    });
    expect(mirror.stats.parsedAhead).toBe(100);

    const view = await viewOf(mirror);
    for (let c = 0; c < 10; c++) await index.put(entry("N7", `held${c}`));
    const paused = mirror.stats.aheadPaused;
    await until(() => mirror.stats.aheadPaused > paused, {
      name: "the warmer to pass its turn while the view is held",
      timeout: 10_000,
    });
    expect(prepared).toHaveLength(100);

    view[Symbol.dispose]();
    await until(() => prepared.length === 110, {
      name: "the writes prepared once the view is gone",
      timeout: 10_000,
    });
    expect(prepared.slice(100).sort()).toEqual([...Array(10).keys()].map((c) => `N7-held${c}`).sort());
  });

  it("prepares every entry of a reload that reads the bucket in several windows of reads", async () => {
    const { prefix, index } = await fixture();
    await Promise.all([...Array(1500).keys()].map((c) => index.put(entry(`N${5 + (c % 10)}`, `many${c}`))));
    const prepared = new Set<string>();
    const mirror = await openIndexMirror(nc, {
      prefix,
      timeoutMs: 5000,
      prepare: (e) => prepared.add(e.requestId),
    });
    closing.push(() => mirror.close());
    await until(() => prepared.size === 1600, {
      name: "the 1,600 entries read at opening prepared",
      timeout: 10_000,
    });
    expect(mirror.stats.parsedAhead).toBe(1600);
  });

  it("reads the bucket again when messages went without a write (a purge of the stream)", async () => {
    const { prefix, index } = await fixture();
    const mirror = await openMirror(prefix);
    await viewOf(mirror);
    const jsm = await jetstreamManager(nc);
    const gone = entry("N3", "c3");
    await jsm.streams.purge(`KV_${prefix}-active`, {
      filter: `$KV.${prefix}-active.${activeEntryKey(gone)}`,
    });
    const seen = await both(mirror, index);
    expect(seen.mirrored).toEqual(seen.stored);
    expect(seen.mirrored).not.toContain("N3-c3:false");
    expect(mirror.stats.reloads).toBe(2);
  });

  it("reads the bucket again after its link broke and writes were lost meanwhile", async () => {
    const proxy = await startPausableProxy(server.url);
    closing.push(async () => {
      await proxy[Symbol.asyncDispose]();
    });
    const mirrorNc = await connectTo(proxy.url, { reconnectTimeWait: 50, maxReconnectAttempts: -1 });
    closing.push(() => mirrorNc.close());
    const { prefix, index } = await fixture();
    const mirror = await openMirror(prefix, mirrorNc);
    await viewOf(mirror);
    proxy.pause();
    proxy.drop();
    proxy.resume();
    for (let c = 0; c < 10; c++) await index.put(entry("N4", `c${c}`, { permitted: true }));
    await until(
      async () =>
        !mirrorNc.isClosed() &&
        (await mirrorNc.flush().then(
          () => true,
          () => false,
        )),
      {
        name: "the mirror's connection back",
        timeout: 10_000,
        interval: 50,
      },
    );
    const seen = await both(mirror, index);
    expect(seen.mirrored).toEqual(seen.stored);
    expect(seen.mirrored.filter((id) => id.startsWith("N4-") && id.endsWith(":true"))).toHaveLength(10);
    expect(mirror.stats.reloads).toBeGreaterThanOrEqual(2);
    expect(mirror.stats.connectionEvents).toBeGreaterThanOrEqual(1);
  });

  it("gives no view, saying why, to a worker whose NATS permissions do not let it hear the bucket's writes", async () => {
    // An upgrade that kept the NATS configuration of an earlier release: the scan reads the server.
    const secured = await startNatsServer({
      extraConfig: `authorization { users = [ { user: "w", password: "p", permissions: { subscribe: { allow: [">"], deny: ["*.active.>"] } } } ] }`,
    });
    closing.push(() => secured.stop());
    const own = await connectTo(secured.url, { user: "w", pass: "p" });
    closing.push(() => own.close());
    const prefix = `mirror${++run}`;
    const index = await openJetStreamActiveIndex(own, { prefix });
    closing.push(() => index.close());
    await index.put(entry("N1", "c1"));
    const mirror = await openMirror(prefix, own);
    await until(async () => (await mirror.view()) === "not hearing the bucket", {
      name: "the mirror refusing views",
      timeout: 10_000,
      interval: 50,
    });
    expect(mirror.stats.unheard).toMatch(/permissions violation/i);
  });

  it("gives no view of a bucket made without the republish (the scan then reads the server)", async () => {
    const prefix = `mirror${++run}`;
    await new Kvm(jetstream(nc)).create(`${prefix}-active`, { history: 1 });
    const mirror = await openMirror(prefix);
    expect(await mirror.view()).toBe("no republish");
    expect(mirror.stats.refused).toBe(1);
  });
});
