import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { DecisionV1 } from "@arbiter/protocol";
import { parseRulesDocument } from "@arbiter/rules";
import {
  createSigner,
  generateKey,
  inspectComponent,
  policyRequestClaims,
  signComponent,
} from "@arbiter/trust";
import { createWorker } from "@arbiter/worker";
import { jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectTo, until } from "../harness/index.js";
import { configuredWorkerKey, type SingleNodeArbiter, startSingleNodeArbiter } from "../support/arbiter.js";
import { fixtureJson } from "../support/fixtures.js";
import { wasmcloudHostBin } from "./peers-cache.js";
import { providerArchive } from "./provider-archive.js";
import {
  exportingComponent,
  invokeRootFunction,
  providerOutcome,
  type RunningWasmcloudHost,
  record,
  requestsAbout,
  scaleFromFile,
  scaleOutcome,
  startProviderFrom,
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
/** The account this suite signs components with; the rules permit what it signed. */
const ISSUER = createSigner(generateKey("A").seed);
/**
 * When set, the requests the host sent are written there as fixtures (`start-component-signed.json`,
 * `start-provider.json`): the bytes exactly as published, plus a final newline.
 */
const CAPTURE_DIR = captureDir(process.env);

const RULES = `
version: 1
default: deny
rules:
  - id: the-peers-component
    effect: allow
    when: kind == "startComponent" && subject.id.startsWith("${ALLOWED}")
    message: allowed by the peers suite
  - id: signed-by-the-peers-issuer
    effect: allow
    when: kind == "startComponent" && claims != null && claims.issuer == "${ISSUER.publicKey}"
    message: signed by the peers suite's issuer
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
    env: { TMPDIR: workDir },
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
    env: { TMPDIR: workDir },
  });
}

function captureDir(env: NodeJS.ProcessEnv): string | undefined {
  return env["ARBITER_PEERS_CAPTURE_DIR"];
}

function capture(name: string, text: string | undefined): void {
  if (CAPTURE_DIR && text !== undefined) writeFileSync(join(CAPTURE_DIR, name), `${text}\n`);
}

/** `tinyComponent(label)` signed by `issuer` with claims made by Arbiter's own code, with a new M key. */
function signedComponent(label: string, issuer = ISSUER) {
  return signComponent(tinyComponent(label), { subject: generateKey("M").publicKey, name: label }, issuer);
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

/** The decision records Arbiter holds for start requests of `componentId` (or `providerId`). */
async function decisionsFor(
  componentId: string,
  kind: "startComponent" | "startProvider" | "performInvocation" = "startComponent",
): Promise<{ text: string; decision: DecisionV1 }[]> {
  const found: { text: string; decision: DecisionV1 }[] = [];
  for await (const stored of arbiter.store.decisions.read({ kind })) {
    const decision = DecisionV1.parse(JSON.parse(stored.text));
    const request = decision.request as {
      request?: { componentId?: string; providerId?: string; target?: { componentId?: string } };
    };
    const id = {
      startComponent: request.request?.componentId,
      startProvider: request.request?.providerId,
      performInvocation: request.request?.target?.componentId,
    }[kind];
    if (id === componentId) found.push({ text: stored.text, decision });
  }
  return found;
}

/** The shape of a request, leaving out the keys of maps whose contents vary (annotations, labels). */
function requestShape(value: unknown): string[] {
  return shape(value).filter(
    (line) => !line.startsWith(".request.annotations.") && !line.startsWith(".host.labels."),
  );
}

/** A request the 1.9.2 host sent, as captured in test/data/wasmcloud-1.9.2/. */
function captured(name: string): unknown {
  return JSON.parse(readFileSync(new URL(`../data/wasmcloud-1.9.2/${name}.json`, import.meta.url), "utf8"));
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

  it("starts a component signed by Arbiter's code: its request carries the claims, and a rule on claims.issuer permits it", async () => {
    const id = "peers-signed";
    await using own = await freshHost();
    const file = join(workDir, "signed.wasm");
    const signed = signedComponent(file);
    expect(inspectComponent(signed.bytes).valid).toBe(true);
    writeFileSync(file, signed.bytes);
    await using requests = await record(nc, POLICY_TOPIC);
    await using events = await record(nc, `wasmbus.evt.${LATTICE}.>`);

    await scaleFromFile(nc, own, id, file);
    const outcome = await scaleOutcome(events, id);
    expect(outcome.subject, outcome.text).toBe(`wasmbus.evt.${LATTICE}.component_scaled`);
    // The host verified the claims itself and reports them in its event.
    expect(JSON.parse(outcome.text).data).toMatchObject({
      public_key: signed.claims.sub,
      claims: { issuer: ISSUER.publicKey, name: file },
    });

    const [sent, ...more] = requestsAbout(requests, id);
    expect(more).toEqual([]);
    const request = JSON.parse(sent ?? "{}");
    expect(request.request.claims).toEqual(policyRequestClaims(signed.claims));
    expect(request.request.claims).toMatchObject({ publicKey: signed.claims.sub, issuer: ISSUER.publicKey });
    // Signed, the request has every key of the (signed) 1.x fixture, claims included, in its order.
    expect(requestShape(request)).toEqual(requestShape(fixtureJson("start-component")));
    capture("start-component-signed.json", sent);
    expect(requestShape(request)).toEqual(requestShape(captured("start-component-signed")));

    const [recorded] = await until(
      async () => {
        const found = await decisionsFor(id);
        return found.length > 0 && found;
      },
      { name: "Arbiter's record of the signed component's request" },
    );
    expect(recorded?.decision).toMatchObject({
      permitted: true,
      message: "signed by the peers suite's issuer",
      matchedRules: ["signed-by-the-peers-issuer"],
    });
    expect(recorded?.text).toContain(sent);
  });

  it("denies a component signed by another account: the rule on claims.issuer does not match", async () => {
    const id = "peers-signed-elsewhere";
    const file = join(workDir, "elsewhere.wasm");
    const other = createSigner(generateKey("A").seed);
    const signed = signedComponent(file, other);
    writeFileSync(file, signed.bytes);
    await using requests = await record(nc, POLICY_TOPIC);
    await using events = await record(nc, `wasmbus.evt.${LATTICE}.>`);

    await scaleFromFile(nc, host, id, file);
    const outcome = await scaleOutcome(events, id);
    expect(outcome.subject).toBe(`wasmbus.evt.${LATTICE}.component_scale_failed`);
    expect(outcome.text).toContain("Policy denied request to scale component");
    const [sent] = requestsAbout(requests, id);
    expect(JSON.parse(sent ?? "{}").request.claims).toMatchObject({ issuer: other.publicKey });
  });

  it("refuses a signed component changed after signing by itself, without asking Arbiter", async () => {
    const id = "peers-tampered";
    const file = join(workDir, "tampered.wasm");
    const tampered = Uint8Array.from(signedComponent(file).bytes);
    // The label's last byte sits just before the appended claims section.
    const at = Buffer.from(tampered).indexOf(Buffer.from(file)) + file.length - 1;
    tampered[at] = (tampered[at] ?? 0) ^ 1;
    expect(inspectComponent(tampered).reasons.map((r) => r.code)).toEqual(["hash-mismatch"]);
    writeFileSync(file, tampered);
    await using requests = await record(nc, POLICY_TOPIC);
    await using events = await record(nc, `wasmbus.evt.${LATTICE}.>`);

    await scaleFromFile(nc, host, id, file);
    const outcome = await scaleOutcome(events, id);
    expect(outcome.subject).toBe(`wasmbus.evt.${LATTICE}.component_scale_failed`);
    expect(outcome.text).toMatch(/extract module claims|hash/i);
    expect(requestsAbout(requests, id)).toEqual([]);
  });

  it("asks Arbiter before starting a provider from a signed archive, with the archive's claims, and does not start it when denied", async () => {
    const id = "peers-provider";
    await using own = await freshHost();
    const file = join(workDir, "provider.par.gz");
    const provider = generateKey("V");
    const archive = providerArchive(
      {
        subject: provider.publicKey,
        name: "peers-provider",
        vendor: "arbiter-peers",
        binaries: { "x86_64-linux": new TextEncoder().encode("#!/bin/sh\nexit 0\n") },
      },
      ISSUER,
    );
    writeFileSync(file, archive.bytes);
    await using requests = await record(nc, POLICY_TOPIC);
    await using events = await record(nc, `wasmbus.evt.${LATTICE}.>`);

    const ack = await startProviderFrom(nc, own, id, pathToFileURL(file).href);
    expect(ack.success, ack.message).toBe(true);
    const outcome = await providerOutcome(events, id);
    expect(outcome.subject, outcome.text).toBe(`wasmbus.evt.${LATTICE}.provider_start_failed`);
    expect(outcome.text).toContain("policy denied request to start provider");

    const sent = requests.seen.map((r) => r.text).filter((text) => text.includes(`"providerId":"${id}"`));
    expect(sent).toHaveLength(1);
    const request = JSON.parse(sent[0] ?? "{}");
    expect(request).toMatchObject({
      kind: "startProvider",
      version: "v1",
      request: {
        providerId: id,
        claims: { publicKey: provider.publicKey, issuer: ISSUER.publicKey, expiresAt: null, expired: false },
      },
      host: { publicKey: own.hostId, lattice: LATTICE },
    });
    expect(requestShape(request)).toEqual(requestShape(fixtureJson("start-provider")));
    capture("start-provider.json", sent[0]);
    expect(requestShape(request)).toEqual(requestShape(captured("start-provider")));

    const [recorded] = await until(
      async () => {
        const found = await decisionsFor(id, "startProvider");
        return found.length > 0 && found;
      },
      { name: "Arbiter's record of the provider request" },
    );
    expect(recorded?.decision.permitted).toBe(false);
    expect(recorded?.text).toContain(sent[0]);
  });

  it("passes on a provider archive's claims without checking their signature: a forged issuer reaches the policy", async () => {
    const id = "peers-provider-forged";
    const file = join(workDir, "forged.par.gz");
    const provider = generateKey("V");
    const forger = createSigner(generateKey("A").seed);
    const archive = providerArchive(
      {
        subject: provider.publicKey,
        name: "forged",
        vendor: "anyone",
        binaries: { "x86_64-linux": new TextEncoder().encode("#!/bin/sh\nexit 0\n") },
        claimedIssuer: ISSUER.publicKey,
      },
      forger,
    );
    writeFileSync(file, archive.bytes);
    await using requests = await record(nc, POLICY_TOPIC);
    await using events = await record(nc, `wasmbus.evt.${LATTICE}.>`);

    await startProviderFrom(nc, host, id, pathToFileURL(file).href);
    await providerOutcome(events, id);
    const sent = requests.seen.map((r) => r.text).filter((text) => text.includes(`"providerId":"${id}"`));
    expect(sent).toHaveLength(1);
    // The issuer in the request is whatever the archive says: the signature was never checked.
    expect(JSON.parse(sent[0] ?? "{}").request.claims).toMatchObject({ issuer: ISSUER.publicKey });
  });

  it("asks Arbiter before running a wRPC invocation of a running component's export, naming the export", async () => {
    const id = `${ALLOWED}-exporting`;
    await using own = await freshHost();
    const file = join(workDir, "exporting.wasm");
    const signed = signComponent(exportingComponent(file), { subject: generateKey("M").publicKey }, ISSUER);
    writeFileSync(file, signed.bytes);
    await using requests = await record(nc, POLICY_TOPIC);
    await using events = await record(nc, `wasmbus.evt.${LATTICE}.>`);

    await scaleFromFile(nc, own, id, file);
    const started = await scaleOutcome(events, id);
    expect(started.subject, started.text).toBe(`wasmbus.evt.${LATTICE}.component_scaled`);

    // The host subscribes on its RPC connection, its event comes on another: invoke until it is heard.
    const sent = await until(
      async () => {
        await invokeRootFunction(nc, LATTICE, id, "f");
        return requests.seen
          .map((r) => r.text)
          .find((text) => text.includes('"kind":"performInvocation"') && text.includes(`"${id}"`));
      },
      { name: "the host's performInvocation request", timeout: 20_000, interval: 500 },
    );
    const request = JSON.parse(sent);
    expect(request).toMatchObject({
      kind: "performInvocation",
      version: "v1",
      // A root function export is served with an empty instance name: the interface is "".
      request: {
        interface: "",
        function: "f",
        target: {
          componentId: id,
          imageRef: pathToFileURL(file).href,
          maxInstances: 0,
          claims: policyRequestClaims(signed.claims),
        },
      },
      host: { publicKey: own.hostId, lattice: LATTICE },
    });
    const fixtureShape = (value: unknown) =>
      shape(value).filter(
        (line) => !line.startsWith(".request.target.annotations.") && !line.startsWith(".host.labels."),
      );
    expect(fixtureShape(request)).toEqual(fixtureShape(fixtureJson("perform-invocation")));
    capture("perform-invocation.json", sent);
    expect(fixtureShape(request)).toEqual(fixtureShape(captured("perform-invocation")));

    const [recorded] = await until(
      async () => {
        const found = await decisionsFor(id, "performInvocation");
        return found.length > 0 && found;
      },
      { name: "Arbiter's record of the invocation request" },
    );
    expect(recorded?.decision.permitted).toBe(false);
    expect(recorded?.text).toContain(sent);
  });

  // Last: it stops the suite's worker.
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
