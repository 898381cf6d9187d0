import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { DecisionV1 } from "@arbiter/protocol";
import { parseRulesDocument } from "@arbiter/rules";
import { createWorker } from "@arbiter/worker";
import { jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectTo, until } from "../harness/index.js";
import { configuredWorkerKey, type SingleNodeArbiter, startSingleNodeArbiter } from "../support/arbiter.js";
import { fixtureJson } from "../support/fixtures.js";
import { wasmcloudHostBin } from "./peers-cache.js";
import {
  type RunningWasmcloudHost,
  record,
  requestsAbout,
  scaleFromFile,
  scaleOutcome,
  startWasmcloudHost,
  tinyComponent,
} from "./wasmcloud-host-driver.js";

// A real wasmCloud 1.9 host (peers/wasmcloud-host, crates.io wasmcloud-host) beside Arbiter's worker
// on one nats-server, driven over its control interface as wadm or `wash` would drive it.

const LATTICE = "peers";
const POLICY_TOPIC = "wasmcloud.policy";
const CHANGES_TOPIC = "wasmcloud.policy.changes";
/** The rules below permit starting components whose id starts with this, and nothing else. */
const ALLOWED = "peers-allowed";

const RULES = `
version: 1
default: deny
rules:
  - id: the-peers-component
    effect: allow
    when: kind == "startComponent" && subject.id.startsWith("${ALLOWED}")
    message: allowed by the peers suite
`;

let arbiter: SingleNodeArbiter;
let nc: NatsConnection;
let host: RunningWasmcloudHost;
let workDir: string;

beforeAll(async () => {
  // Fails here, naming `npm run peers`, when the host is not in the cache.
  wasmcloudHostBin();
  arbiter = await startSingleNodeArbiter();
  const applied = await arbiter.admin.apply(parseRulesDocument(RULES));
  await arbiter.worker.waitForRevision(applied.revision);
  nc = await connectTo(arbiter.server.url);
  workDir = mkdtempSync(join(tmpdir(), "arbiter-peers-host-"));
  host = await startWasmcloudHost({
    natsUrl: arbiter.server.url,
    lattice: LATTICE,
    policyTopic: POLICY_TOPIC,
    changesTopic: CHANGES_TOPIC,
    policyTimeoutMs: 5_000,
  });
});

afterAll(async () => {
  await host?.process.stop();
  await nc?.close();
  await arbiter?.stop();
  if (workDir) rmSync(workDir, { recursive: true, force: true });
});

/**
 * A host of its own for a test that starts a component: a 0.27.1 host here stops answering its
 * control interface once it has started a second component (see the README), so each host starts one.
 */
function freshHost(): Promise<RunningWasmcloudHost> {
  return startWasmcloudHost({
    natsUrl: arbiter.server.url,
    lattice: LATTICE,
    policyTopic: POLICY_TOPIC,
    changesTopic: CHANGES_TOPIC,
    policyTimeoutMs: 5_000,
  });
}

/** Every key of `value`, depth first, with the JSON type of its value: the shape of a request. */
function shape(value: unknown, path = ""): string[] {
  if (value === null) return [`${path}: null`];
  if (Array.isArray(value)) return [`${path}: array`];
  if (typeof value !== "object") return [`${path}: ${typeof value}`];
  return Object.entries(value).flatMap(([key, inner]) => [
    `${path}.${key}`,
    ...shape(inner, `${path}.${key}`),
  ]);
}

/** The decision records Arbiter holds for start requests of `componentId`. */
async function decisionsFor(componentId: string): Promise<{ text: string; decision: DecisionV1 }[]> {
  const found: { text: string; decision: DecisionV1 }[] = [];
  for await (const stored of arbiter.store.decisions.read({ kind: "startComponent" })) {
    const decision = DecisionV1.parse(JSON.parse(stored.text));
    const request = decision.request as { request?: { componentId?: string } };
    if (request.request?.componentId === componentId) found.push({ text: stored.text, decision });
  }
  return found;
}

describe("a real wasmCloud 1.9 host beside Arbiter", () => {
  it("starts, creates its lattice buckets and answers host.ping with its id and version", async () => {
    expect(host.lattice).toBe(LATTICE);
    expect(host.hostId).toMatch(/^N[A-Z2-7]{55}$/);

    const reply = await nc.request(`wasmbus.ctl.v1.${LATTICE}.host.ping`, "", { timeout: 10_000 });
    const pong = reply.json<{
      success: boolean;
      response?: { id: string; version: string; lattice: string };
    }>();
    expect(pong.success).toBe(true);
    expect(pong.response).toMatchObject({ id: host.hostId, version: host.version, lattice: LATTICE });

    const jsm = await jetstreamManager(nc);
    const streams: string[] = [];
    for await (const info of jsm.streams.list()) streams.push(info.config.name);
    expect(streams).toEqual(
      expect.arrayContaining([`KV_LATTICEDATA_${LATTICE}`, `KV_CONFIGDATA_${LATTICE}`]),
    );
  });

  it("asks Arbiter before starting a component from a file, and does not start it when denied", async () => {
    const file = join(workDir, "denied.wasm");
    writeFileSync(file, tinyComponent(file));
    await using requests = await record(nc, POLICY_TOPIC);
    await using events = await record(nc, `wasmbus.evt.${LATTICE}.>`);

    const ack = await scaleFromFile(nc, host, "peers-denied", file);
    expect(ack.success).toBe(true);

    const failed = await until(
      () =>
        events.seen.find(
          (e) => e.subject.endsWith(".component_scale_failed") && e.text.includes("peers-denied"),
        ),
      { name: "the host's component_scale_failed event", timeout: 20_000 },
    );
    expect(failed.text).toContain("Policy denied request to scale component");
    expect(
      events.seen.some((e) => e.subject.endsWith(".component_scaled") && e.text.includes("peers-denied")),
    ).toBe(false);

    const sent = requests.seen.map((r) => r.text).filter((text) => text.includes("peers-denied"));
    expect(sent).toHaveLength(1);
    const request = JSON.parse(sent[0] ?? "{}");
    expect(request).toMatchObject({
      kind: "startComponent",
      version: "v1",
      request: {
        componentId: "peers-denied",
        imageRef: pathToFileURL(file).href,
        maxInstances: 1,
        claims: null,
      },
      host: { publicKey: host.hostId, lattice: LATTICE },
    });

    // The record holds the host's request exactly as it was sent.
    const [recorded, ...more] = await until(
      async () => {
        const found = await decisionsFor("peers-denied");
        return found.length > 0 && found;
      },
      { name: "Arbiter's record of the host's request" },
    );
    expect(more).toEqual([]);
    expect(recorded?.decision.permitted).toBe(false);
    expect(recorded?.text).toContain(sent[0]);
  });

  it("starts a component from a file when the rules permit it", async () => {
    const file = join(workDir, "allowed.wasm");
    writeFileSync(file, tinyComponent(file));
    await using events = await record(nc, `wasmbus.evt.${LATTICE}.>`);

    const ack = await scaleFromFile(nc, host, ALLOWED, file);
    expect(ack.success).toBe(true);
    const outcome = await until(
      () =>
        events.seen.find(
          (e) =>
            (e.subject.endsWith(".component_scaled") || e.subject.endsWith(".component_scale_failed")) &&
            e.text.includes(ALLOWED),
        ),
      { name: "the host's component_scaled event", timeout: 20_000 },
    );
    expect(outcome.subject, outcome.text).toBe(`wasmbus.evt.${LATTICE}.component_scaled`);

    const [recorded] = await decisionsFor(ALLOWED);
    expect(recorded?.decision).toMatchObject({ permitted: true, message: "allowed by the peers suite" });

    const inventory = await nc.request(`wasmbus.ctl.v1.${LATTICE}.host.get.${host.hostId}`, "", {
      timeout: 10_000,
    });
    const components =
      inventory.json<{ response?: { components?: { id: string }[] } }>().response?.components ?? [];
    expect(components.map((c) => c.id)).toContain(ALLOWED);
  });

  it("sends requests of the fixtures' shape: the same keys in the same order, null sent rather than omitted", async () => {
    const file = join(workDir, "shape.wasm");
    writeFileSync(file, tinyComponent(file));
    await using requests = await record(nc, POLICY_TOPIC);
    await using events = await record(nc, `wasmbus.evt.${LATTICE}.>`);
    await scaleFromFile(nc, host, "peers-shape", file);
    await scaleOutcome(events, "peers-shape");
    const [sent] = requestsAbout(requests, "peers-shape");
    const fixture = fixtureJson("start-component");
    const body = fixture["request"] as Record<string, unknown>;
    // The real host's component is unsigned (claims null); the fixture's is signed.
    const expected = shape({ ...fixture, request: { ...body, claims: null } }).filter(
      (line) => !line.startsWith(".request.annotations.") && !line.startsWith(".host.labels."),
    );
    const actual = shape(JSON.parse(sent ?? "{}")).filter(
      (line) => !line.startsWith(".request.annotations.") && !line.startsWith(".host.labels."),
    );
    expect(actual).toEqual(expected);
    const captured = JSON.parse(
      readFileSync(new URL("../data/wasmcloud-1.9.2/start-component.json", import.meta.url), "utf8"),
    );
    expect(actual).toEqual(
      shape(captured).filter(
        (line) => !line.startsWith(".request.annotations.") && !line.startsWith(".host.labels."),
      ),
    );
  });

  it("applies an override on the changes topic to its cached denial, starting the component without asking again", async () => {
    const id = "peers-override";
    await using own = await freshHost();
    const file = join(workDir, "override.wasm");
    writeFileSync(file, tinyComponent(file));
    await using requests = await record(nc, POLICY_TOPIC);
    await using events = await record(nc, `wasmbus.evt.${LATTICE}.>`);

    await scaleFromFile(nc, own, id, file);
    const denied = await scaleOutcome(events, id);
    expect(denied.subject).toBe(`wasmbus.evt.${LATTICE}.component_scale_failed`);
    const [sent] = requestsAbout(requests, id);
    const { requestId } = JSON.parse(sent ?? "{}") as { requestId: string };

    nc.publish(
      CHANGES_TOPIC,
      JSON.stringify({
        requestId,
        request_id: requestId,
        permitted: true,
        message: "granted by an override",
      }),
    );
    await nc.flush();

    // The host applies the override on its own subscription; until it has, a scale is denied from the cache.
    await until(
      async () => {
        const from = events.seen.length;
        await scaleFromFile(nc, own, id, file);
        const outcome = await scaleOutcome(events, id, from);
        return outcome.subject.endsWith(".component_scaled");
      },
      { name: "the override to reach the host's cache", timeout: 30_000, interval: 200 },
    );
    expect(requestsAbout(requests, id)).toHaveLength(1);
  });

  it("fails closed without a worker, caches nothing then, and asks a restarted worker", async () => {
    const id = `${ALLOWED}-restart`;
    await using own = await freshHost();
    const file = join(workDir, "restart.wasm");
    writeFileSync(file, tinyComponent(file));
    await using requests = await record(nc, POLICY_TOPIC);
    await using events = await record(nc, `wasmbus.evt.${LATTICE}.>`);

    await arbiter.worker.stop();
    await scaleFromFile(nc, own, id, file);
    const failed = await scaleOutcome(events, id);
    expect(failed.subject).toBe(`wasmbus.evt.${LATTICE}.component_scale_failed`);
    expect(requestsAbout(requests, id)).toHaveLength(1);

    const worker = createWorker({
      nc: arbiter.nc,
      logger: pino({ level: "silent" }),
      config: { adminKeys: [arbiter.signer.publicKey], ...configuredWorkerKey() },
    });
    await worker.start();
    try {
      const from = events.seen.length;
      await scaleFromFile(nc, own, id, file);
      const outcome = await scaleOutcome(events, id, from);
      expect(outcome.subject, outcome.text).toBe(`wasmbus.evt.${LATTICE}.component_scaled`);
      expect(requestsAbout(requests, id)).toHaveLength(2);
    } finally {
      await worker.stop();
    }
  });
});
