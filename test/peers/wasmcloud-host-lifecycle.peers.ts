import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { latticeEventJson } from "@arbiter/host";
import { parseLatticeEvent } from "@arbiter/protocol";
import { type ActiveIndex, openJetStreamActiveIndex } from "@arbiter/store";
import type { NatsConnection } from "@nats-io/nats-core";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectTo, until } from "../harness/index.js";
import { type SingleNodeArbiter, startSingleNodeArbiter } from "../support/arbiter.js";
import { untilIndexCaughtUp } from "../support/fanout.js";
import { wasmcloudHostBin } from "./peers-cache.js";
import {
  type RunningWasmcloudHost,
  record,
  requestsAbout,
  scaleFromFile,
  startWasmcloudHost,
  tinyComponent,
} from "./wasmcloud-host-driver.js";

// Host lifecycle pruning with a real wasmCloud 1.9 host: its ping answers keep a forged stop from
// pruning it, and its graceful stop (SIGTERM: host_stopped) prunes its entries.

const LATTICE = "peers-lifecycle";

let arbiter: SingleNodeArbiter;
let nc: NatsConnection;
let index: ActiveIndex;
let workDir: string;
const logLines: string[] = [];

beforeAll(async () => {
  wasmcloudHostBin();
  const sink = new Writable({
    write(chunk, _encoding, done) {
      logLines.push(String(chunk));
      done();
    },
  });
  arbiter = await startSingleNodeArbiter(
    { lattices: [LATTICE], hostPingWaitMs: 2000 },
    { logger: pino({ level: "info" }, sink) },
  );
  nc = await connectTo(arbiter.server.url);
  index = await openJetStreamActiveIndex(nc, { create: false });
  workDir = mkdtempSync(join(tmpdir(), "arbiter-peers-lifecycle-"));
});

afterAll(async () => {
  await nc?.close();
  await arbiter?.stop();
  if (workDir) rmSync(workDir, { recursive: true, force: true });
});

async function entriesOf(host: string): Promise<number> {
  let count = 0;
  for await (const _ of index.entries({ lattice: LATTICE, host })) count++;
  return count;
}

describe("a real wasmCloud 1.9 host's lifecycle", () => {
  it("survives a forged host_stopped by answering the ping, and its graceful stop prunes its entries", async () => {
    await using events = await record(nc, `wasmbus.evt.${LATTICE}.>`);
    await using requests = await record(nc, "wasmcloud.policy");
    const host: RunningWasmcloudHost = await startWasmcloudHost({
      natsUrl: arbiter.server.url,
      lattice: LATTICE,
      policyTopic: "wasmcloud.policy",
      changesTopic: "wasmcloud.policy.changes",
      policyTimeoutMs: 5_000,
      env: { TMPDIR: workDir },
    });
    try {
      const file = join(workDir, "lifecycle.wasm");
      writeFileSync(file, tinyComponent("lifecycle"));
      await scaleFromFile(nc, host, "peers-lifecycle-component", file);
      await until(() => requestsAbout(requests, "peers-lifecycle-component").length > 0, {
        name: "the host's policy request",
        timeout: 20_000,
      });
      await untilIndexCaughtUp(nc);
      await until(async () => (await entriesOf(host.hostId)) > 0, { name: "the host's entry indexed" });
      const started = events.seen.find((e) => e.subject.endsWith(".host_started"));
      expect(
        started && parseLatticeEvent(new TextEncoder().encode(started.text), "host_started"),
      ).toMatchObject({
        ok: true,
        event: { name: "host_started", host: host.hostId },
      });

      nc.publish(
        `wasmbus.evt.${LATTICE}.host_stopped`,
        latticeEventJson("host_stopped", host.hostId, { labels: {} }),
      );
      await until(() => logLines.some((line) => line.includes("still answer pings")), {
        name: "the forged stop refused: the real host answered the ping",
        timeout: 20_000,
      });
      expect(await entriesOf(host.hostId)).toBeGreaterThan(0);
    } finally {
      await host.process.stop();
    }
    const stopped = await until(() => events.seen.find((e) => e.subject.endsWith(".host_stopped")), {
      name: "the host's own host_stopped",
      timeout: 20_000,
    });
    expect(parseLatticeEvent(new TextEncoder().encode(stopped.text), "host_stopped")).toMatchObject({
      ok: true,
      event: { host: host.hostId },
    });
    await until(async () => (await entriesOf(host.hostId)) === 0, {
      name: "the stopped host's entries pruned",
      timeout: 20_000,
      interval: 100,
    });
  });
});
