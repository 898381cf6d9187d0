import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createHostPolicyClient } from "@arbiter/host";
import type { NatsConnection } from "@nats-io/nats-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectTo, type NatsServerProcess, startNatsServer } from "../harness/index.js";
import { wasmcloudHostBin } from "./peers-cache.js";
import {
  type RunningWasmcloudHost,
  record,
  scaleFromFile,
  scaleOutcome,
  startWasmcloudHost,
  tinyComponent,
} from "./wasmcloud-host-driver.js";

// How the real 1.9 host decodes a policy answer (serde_json into its `Response` struct), against a
// stand-in policy service that answers each component with a payload chosen by the test, and the
// reference host client in packages/host given the same answers.

const LATTICE = "peers-serde";
const POLICY_TOPIC = "peers.serde.policy";
/** The host's and the reference client's policy timeout; the stand-in answers at once or never. */
const TIMEOUT_MS = 3_000;

/** componentId → the answer's bytes, given the request's id. */
const ANSWERS: Record<string, (requestId: string) => string> = {
  // serde reads a struct from a JSON array of its fields in order: a permit.
  "serde-array": (id) => JSON.stringify([id, true, "an array"]),
  // serde refuses a field written twice: the host cannot decode it and fails closed.
  "serde-duplicate": (id) => `{"requestId":${JSON.stringify(id)},"permitted":true,"permitted":true}`,
  // serde_json refuses a lone surrogate escape in a string it reads.
  "serde-surrogate": () => '{"requestId":"\\ud800","permitted":true}',
  // serde_json does not skip a byte order mark.
  "serde-bom": (id) => `\ufeff{"requestId":${JSON.stringify(id)},"permitted":true}`,
};

let server: NatsServerProcess;
let nc: NatsConnection;
let host: RunningWasmcloudHost;
let workDir: string;

beforeAll(async () => {
  wasmcloudHostBin();
  server = await startNatsServer({ jetstream: true });
  nc = await connectTo(server.url);
  nc.subscribe(POLICY_TOPIC, {
    callback: (_err, msg) => {
      const request = msg.json<{ requestId: string; request: { componentId: string } }>();
      const answer = ANSWERS[request.request.componentId];
      if (answer) msg.respond(answer(request.requestId));
    },
  });
  await nc.flush();
  workDir = mkdtempSync(join(tmpdir(), "arbiter-peers-serde-"));
  host = await startWasmcloudHost({
    natsUrl: server.url,
    lattice: LATTICE,
    policyTopic: POLICY_TOPIC,
    changesTopic: "peers.serde.changes",
    policyTimeoutMs: TIMEOUT_MS,
    env: { TMPDIR: workDir },
  });
});

afterAll(async () => {
  await host?.process.stop();
  await nc?.close();
  await server?.stop();
  if (workDir) rmSync(workDir, { recursive: true, force: true });
});

describe("the real host decodes policy answers as serde does, and so does the reference client", () => {
  it.each([
    ["a repeated field", "serde-duplicate", "duplicate field `permitted`"],
    ["a lone surrogate in requestId", "serde-surrogate", "lone surrogate"],
    ["a byte order mark", "serde-bom", "not UTF-8 JSON"],
  ])("fails closed on an answer with %s, which JSON.parse would take", async (_, id, reason) => {
    const file = join(workDir, `${id}.wasm`);
    writeFileSync(file, tinyComponent(file));
    await using events = await record(nc, `wasmbus.evt.${LATTICE}.>`);
    await scaleFromFile(nc, host, id, file);
    const outcome = await scaleOutcome(events, id);
    expect(outcome.subject).toBe(`wasmbus.evt.${LATTICE}.component_scale_failed`);
    expect(outcome.text).toContain("deserialize policy response");

    const client = createHostPolicyClient({
      nc,
      policyTopic: POLICY_TOPIC,
      changesTopic: null,
      host: hostInfo(),
    });
    const answer = await client.evaluateStartComponent(body(id, file));
    expect(answer).toMatchObject({ permitted: false, failure: "undecodable", cached: false });
    expect(answer.message).toContain(reason);
  });

  it("fails closed when no answer comes within its timeout, caches nothing, and asks again", async () => {
    const id = "serde-silent";
    const file = join(workDir, `${id}.wasm`);
    writeFileSync(file, tinyComponent(file));
    await using requests = await record(nc, POLICY_TOPIC);
    await using events = await record(nc, `wasmbus.evt.${LATTICE}.>`);
    await scaleFromFile(nc, host, id, file);
    const first = await scaleOutcome(events, id);
    expect(first.subject).toBe(`wasmbus.evt.${LATTICE}.component_scale_failed`);
    expect(first.text).toContain("timed out");
    const from = events.seen.length;
    await scaleFromFile(nc, host, id, file);
    await scaleOutcome(events, id, from);
    expect(requests.seen.filter((r) => r.text.includes(`"componentId":"${id}"`))).toHaveLength(2);

    const client = createHostPolicyClient({
      nc,
      policyTopic: POLICY_TOPIC,
      changesTopic: null,
      timeoutMs: TIMEOUT_MS,
      host: hostInfo(),
    });
    expect(await client.evaluateStartComponent(body(id, file))).toMatchObject({
      permitted: false,
      failure: "timeout",
    });
    expect(await client.evaluateStartComponent(body(id, file))).toMatchObject({
      cached: false,
      failure: "timeout",
    });
  });

  // Last: the host starts one component per process (see the README).
  it("starts a component on an answer written as a JSON array [requestId, permitted, message]", async () => {
    const id = "serde-array";
    const file = join(workDir, `${id}.wasm`);
    writeFileSync(file, tinyComponent(file));
    await using events = await record(nc, `wasmbus.evt.${LATTICE}.>`);
    await scaleFromFile(nc, host, id, file);
    const outcome = await scaleOutcome(events, id);
    expect(outcome.subject, outcome.text).toBe(`wasmbus.evt.${LATTICE}.component_scaled`);

    const client = createHostPolicyClient({
      nc,
      policyTopic: POLICY_TOPIC,
      changesTopic: null,
      host: hostInfo(),
    });
    expect(await client.evaluateStartComponent(body(id, file))).toMatchObject({
      permitted: true,
      message: "an array",
      cached: false,
    });
  });
});

function hostInfo() {
  return { publicKey: host.hostId, lattice: LATTICE, labels: {} };
}

function body(componentId: string, file: string) {
  return { componentId, imageRef: `file://${file}`, maxInstances: 1, annotations: {}, claims: null };
}
