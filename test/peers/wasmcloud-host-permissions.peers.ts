import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  createOperatorSetup,
  type NatsRole,
  type NatsServerProcess,
  renderCredsFile,
  renderOperatorConfig,
  startNatsServer,
  WORKER_INBOX_PREFIX,
  WORKER_REPLY_PREFIXES,
} from "@arbiter/embedded-nats";
import { parseRulesDocument } from "@arbiter/rules";
import { createRulesAdmin, openJetStreamStore } from "@arbiter/store";
import { createSigner, generateKey } from "@arbiter/trust";
import { createWorker, type Worker } from "@arbiter/worker";
import { jetstreamManager } from "@nats-io/jetstream";
import { credsAuthenticator, type NatsConnection } from "@nats-io/nats-core";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectTo } from "../harness/index.js";
import { configuredWorkerKey } from "../support/arbiter.js";
import { wasmcloudHostBin } from "./peers-cache.js";
import {
  type RunningWasmcloudHost,
  record,
  scaleFromFile,
  scaleOutcome,
  startWasmcloudHost,
  tinyComponent,
} from "./wasmcloud-host-driver.js";

// A real wasmCloud 1.9 host that signs in with the generated host JWT on an operator-mode server
// carrying the shipped permissions (the form a real host can present: it ignores a password in
// the URL), beside a worker signed in as the worker JWT user.

const LATTICE = "permissions";
const ALLOWED = "permitted-component";
const RULES = `
version: 1
default: deny
rules:
  - id: the-permitted-component
    effect: allow
    when: kind == "startComponent" && subject.id.startsWith("${ALLOWED}")
`;

let server: NatsServerProcess;
let workDir: string;
let credsFiles: Record<NatsRole, string>;
let worker: Worker;
let host: RunningWasmcloudHost;
const connections: NatsConnection[] = [];

async function connectAs(role: NatsRole, inboxPrefix?: string): Promise<NatsConnection> {
  const nc = await connectTo(server.url, {
    authenticator: credsAuthenticator(new TextEncoder().encode(renderCredsFileOf(role))),
    ...(inboxPrefix ? { inboxPrefix } : {}),
  });
  connections.push(nc);
  return nc;
}

let renderCredsFileOf: (role: NatsRole) => string;

beforeAll(async () => {
  wasmcloudHostBin();
  const setup = createOperatorSetup({ lattice: LATTICE });
  renderCredsFileOf = (role) => renderCredsFile(setup.users[role]);
  workDir = mkdtempSync(join(tmpdir(), "arbiter-peers-permissions-"));
  credsFiles = { host: "", worker: "", admin: "" };
  for (const role of ["host", "worker", "admin"] as const) {
    credsFiles[role] = join(workDir, `${role}.creds`);
    writeFileSync(credsFiles[role], renderCredsFileOf(role), { mode: 0o600 });
  }
  server = await startNatsServer({
    extraConfig: renderOperatorConfig(setup),
    logFile: join(workDir, "nats-server.log"),
    // Debug logging names each client, so that the host's refusals would show in the log.
    debug: true,
  });
  const admin = generateKey("O");
  const adminNc = await connectAs("admin", "_INBOX_arbiter_admin");
  const store = await openJetStreamStore(adminNc);
  await createRulesAdmin({ store, signer: createSigner(admin.seed) }).apply(parseRulesDocument(RULES));
  worker = createWorker({
    nc: await connectAs("worker", WORKER_INBOX_PREFIX),
    logger: pino({ level: "silent" }),
    config: {
      adminKeys: [admin.publicKey],
      inboxPrefixes: [...WORKER_REPLY_PREFIXES],
      lattices: [LATTICE],
      ...configuredWorkerKey(),
    },
  });
  await worker.start();
  host = await startWasmcloudHost({
    natsUrl: server.url,
    lattice: LATTICE,
    policyTopic: "wasmcloud.policy",
    changesTopic: "wasmcloud.policy.changes",
    policyTimeoutMs: 5_000,
    credsFile: credsFiles.host,
  });
});

afterAll(async () => {
  await host?.process.stop();
  await worker?.stop();
  await Promise.allSettled(connections.map((nc) => nc.close()));
  await server?.stop();
  if (workDir) rmSync(workDir, { recursive: true, force: true });
});

describe("a real wasmCloud 1.9 host under the shipped permissions (JWT users, operator mode)", () => {
  it("starts and creates its lattice buckets itself", async () => {
    expect(host.hostId).toMatch(/^N[A-Z2-7]{55}$/);
    const jsm = await jetstreamManager(await connectAs("host"));
    for (const bucket of [`KV_LATTICEDATA_${LATTICE}`, `KV_CONFIGDATA_${LATTICE}`]) {
      expect((await jsm.streams.info(bucket)).config.name).toBe(bucket);
    }
  });

  it("asks the worker through the policy service and starts a permitted component", async () => {
    // The controller (as wash or wadm) signs in with the lattice's host credentials.
    const controller = await connectAs("host");
    await using events = await record(controller, `wasmbus.evt.${LATTICE}.>`);
    const file = join(workDir, "permitted.wasm");
    writeFileSync(file, tinyComponent("permitted under the shipped permissions"));
    const componentId = `${ALLOWED}-1`;
    const before = worker.stats().decisions;
    const ack = await scaleFromFile(controller, host, componentId, file);
    expect(ack.success, ack.message).toBe(true);
    const outcome = await scaleOutcome(events, componentId);
    expect(outcome.subject).toMatch(/\.component_scaled$/);
    expect(worker.stats().decisions).toBeGreaterThan(before);
    expect(worker.stats()).toMatchObject({ refusedReply: 0, logFailures: 0 });
    // Nothing the host did was refused: the allow-list holds all it needs (its connections are "wasmbus").
    const log = readFileSync(join(workDir, "nats-server.log"), "utf8").split("\n");
    expect(log.filter((line) => /:wasmbus"/.test(line) && /violation/i.test(line))).toEqual([]);
    expect(log.some((line) => /:wasmbus"/.test(line))).toBe(true);
    // Nor anything the worker did, the lattice's host events and ping included.
    expect(log.filter((line) => /violation/i.test(line))).toEqual([]);
  });

  it("as the same host identity, reads and writes nothing of Arbiter's", async () => {
    const attacker = await connectAs("host");
    for (const subject of [
      "$JS.API.STREAM.LIST",
      "$JS.API.STREAM.NAMES",
      "$JS.API.STREAM.INFO.ARBITER_DECISIONS",
      "$JS.API.CONSUMER.DURABLE.CREATE.ARBITER_DECISIONS.spy",
      `$JS.API.STREAM.CREATE.EVIL`,
    ]) {
      await expect(attacker.request(subject, "{}", { timeout: 1000 }), subject).rejects.toThrow();
    }
    const listener = await connectAs("host");
    await using heard = await record(listener, "wasmcloud.policy.changes");
    attacker.publish(
      "wasmcloud.policy.changes",
      '{"requestId":"x","request_id":"x","permitted":true,"message":"x"}',
    );
    await attacker.flush();
    await listener.flush();
    expect(heard.seen).toEqual([]);
    const sniff = attacker.subscribe("_INBOX_arbiter_worker.>");
    await attacker.flush();
    expect(String(await sniff.closed)).toMatch(/permissions violation/i);
  });
});
