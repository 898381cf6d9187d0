import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { DecisionV1, PolicyResponseV1, resourceNames } from "@arbiter/protocol";
import { parseRulesDocument } from "@arbiter/rules";
import { BATCH_SIGNATURE_HEADER, openJetStreamStore } from "@arbiter/store";
import {
  createSigner,
  generateKey,
  POLICY_INVOCATION_HEADER,
  type Signer,
  signPolicyRequest,
} from "@arbiter/trust";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { createInbox, headers } from "@nats-io/nats-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { until } from "./harness/index.js";
import { type SingleNodeArbiter, startSingleNodeArbiter } from "./support/arbiter.js";
import { runArbiter } from "./support/cli.js";
import { componentBody, untilRevisionReevaluated } from "./support/fanout.js";
import { fixtureJson } from "./support/fixtures.js";

// Real traffic through a worker under two revisions, every kind of record the project writes
// (requests, edge rejections, signature refusals, signed requests with their trust result,
// unanswered reply subjects, re-evaluations), then `arbiter audit replay` and `audit whatif`.

const TOPIC = "wasmcloud.policy";
const cluster = createSigner(generateKey("C").seed, "C");
const stranger = createSigner(generateKey("C").seed, "C");
const provider = fixtureJson("start-provider") as Record<string, unknown> & {
  requestId: string;
  host: { publicKey: string; lattice: string };
};
const component = fixtureJson("start-component");

let arbiter: SingleNodeArbiter;
let counter = 0;
let whatifSince: Date;
/** The component the what-if candidate denies, and how many requests for it were decided in the window. */
const TARGET = "whatif-target";
const TARGET_REQUESTS = 7;
const OTHER_REQUESTS = 5;

function id(): string {
  return `audit-${process.pid}-${++counter}`;
}

function bytesOf(value: object): Uint8Array {
  return Buffer.from(JSON.stringify(value));
}

async function ask(bytes: Uint8Array, token?: string): Promise<PolicyResponseV1> {
  const h = headers();
  if (token !== undefined) h.set(POLICY_INVOCATION_HEADER, token);
  const reply = await arbiter.nc.request(TOPIC, bytes, { timeout: 5000, headers: h });
  return PolicyResponseV1.parse(JSON.parse(reply.string()));
}

function token(bytes: Uint8Array, signer: Signer): string {
  return signPolicyRequest(
    {
      hostKey: provider.host.publicKey,
      lattice: provider.host.lattice,
      policyTopic: TOPIC,
      kind: "startProvider",
      request: bytes,
    },
    signer,
  );
}

async function records(prefix?: string): Promise<DecisionV1[]> {
  const store = prefix === undefined ? arbiter.store : await openJetStreamStore(arbiter.nc, { prefix });
  const found: DecisionV1[] = [];
  for await (const stored of store.decisions.read()) found.push(DecisionV1.parse(JSON.parse(stored.text)));
  return found;
}

async function untilRecorded(count: number): Promise<DecisionV1[]> {
  return until(
    async () => {
      const found = await records();
      return found.length >= count ? found : null;
    },
    { timeout: 20_000, name: `${count} decision records` },
  );
}

/** Every kind of request traffic once: the number of records it makes. */
async function traffic(): Promise<number> {
  for (const name of ["start-component", "start-provider", "perform-invocation"]) {
    await ask(bytesOf({ ...fixtureJson(name), requestId: id() }));
  }
  const signed = bytesOf({ ...provider, requestId: id() });
  const signature = token(signed, cluster);
  expect(await ask(signed, signature)).toBeDefined();
  // The same token again: recorded as a replay, not answered.
  const h = headers();
  h.set(POLICY_INVOCATION_HEADER, signature);
  arbiter.nc.publish(TOPIC, signed, { reply: createInbox(), headers: h });
  const forged = bytesOf({ ...provider, requestId: id() });
  expect((await ask(forged, token(forged, stranger))).permitted).toBe(false);
  expect((await ask(Buffer.from(`{"requestId": "${id()}", `))).permitted).toBe(false);
  expect((await ask(bytesOf({ ...component, requestId: id(), kind: "startTheWorld" }))).permitted).toBe(
    false,
  );
  const text = JSON.stringify({ ...component, requestId: id() }).replace(
    '"kind":',
    '"kind":"unknown","kind":',
  );
  expect((await ask(Buffer.from(text))).permitted).toBe(false);
  // Recorded, not answered: the reply subject is not an inbox.
  arbiter.nc.publish(TOPIC, bytesOf({ ...provider, requestId: id() }), { reply: "not.an.inbox" });
  await arbiter.nc.flush();
  return 10;
}

/** The target's image, as a host holding its credentials may name it. */
const TARGET_IMAGE = `ghcr.io/example/<script>alert("whatif")</script>:0.1.0`;

function componentRequest(name: string): Uint8Array {
  const body = { ...componentBody(name), ...(name === TARGET ? { imageRef: TARGET_IMAGE } : {}) };
  return bytesOf({ ...component, requestId: id(), request: body });
}

beforeAll(async () => {
  arbiter = await startSingleNodeArbiter({
    id: "w-audit",
    requestSignatures: "verify-if-present",
    clusterIssuers: [cluster.publicKey],
  });
  let expected = await traffic();
  await untilRecorded(expected);
  // Revision two: signed providers only, components allowed, with a rule on the trust result. The
  // providers permitted under revision one are re-evaluated into denials.
  const { revision } = await arbiter.admin.apply(
    parseRulesDocument(
      JSON.stringify({
        version: 1,
        default: "allow",
        rules: [
          { id: "verified-providers", effect: "deny", when: 'kind == "startProvider" && !trust.verified' },
          { id: "watch-components", effect: "deny", mode: "dryrun", when: 'kind == "startComponent"' },
        ],
      }),
    ),
  );
  await arbiter.worker.waitForRevision(revision);
  await untilRevisionReevaluated(arbiter.nc, revision);
  const reevaluated = await until(
    async () => (await records()).filter((r) => r.cause === "reevaluation").length,
    { timeout: 20_000, name: "a re-evaluation record" },
  );
  expected += reevaluated;
  whatifSince = new Date();
  expected += await traffic();
  for (let i = 0; i < TARGET_REQUESTS; i++)
    expect((await ask(componentRequest(TARGET))).permitted).toBe(true);
  for (let i = 0; i < OTHER_REQUESTS; i++)
    expect((await ask(componentRequest("whatif-other"))).permitted).toBe(true);
  expected += TARGET_REQUESTS + OTHER_REQUESTS;
  await untilRecorded(expected);
}, 120_000);

afterAll(async () => {
  await arbiter?.stop();
});

/** A replay report without what depends on how fast it ran. */
function timeless(report: Record<string, unknown>) {
  return { ...report, seconds: 0, decisionsPerSecond: 0 };
}

describe("arbiter audit replay", () => {
  it("reproduces every decision of every kind under both revisions", async () => {
    const all = await records();
    expect(new Set(all.map((r) => r.revision)).size).toBeGreaterThanOrEqual(2);
    expect(all.some((r) => r.cause === "reevaluation")).toBe(true);
    expect(all.some((r) => r.trust.verified)).toBe(true);
    expect(all.some((r) => r.trust.reasons.includes("replayed") && r.rejection !== null)).toBe(true);
    const result = await runArbiter(["audit", "replay", "--servers", arbiter.server.url, "--json"]);
    expect(result.stderr).toBe("");
    expect(result.code).toBe(0);
    const report = JSON.parse(result.stdout);
    expect(report).toMatchObject({ decisions: all.length, mismatches: 0, mismatched: [] });
    expect(report.decisionsPerSecond).toBeGreaterThan(0);
    for (const check of ["rules", "edge", "edge-unrecorded", "signature", "reply"]) {
      expect(report.checks[check], check).toBeGreaterThan(0);
    }
    // Replayed in two worker threads from the first record: the same report.
    const threaded = await runArbiter([
      "audit",
      "replay",
      "--servers",
      arbiter.server.url,
      "--threads",
      "2",
      "--json",
    ]);
    expect(threaded.code, threaded.stderr).toBe(0);
    expect(timeless(JSON.parse(threaded.stdout))).toEqual(timeless(report));
  });

  it("reports exactly the one record altered in a copy of the streams, with both outcomes", async () => {
    // The copy is another prefix's streams, filled with the messages as stored (batch signatures
    // and all; replay does not verify signatures, `audit verify` does), one record's outcome changed.
    const copy = await openJetStreamStore(arbiter.nc, { prefix: "copy" });
    await copy.close();
    const names = resourceNames();
    const target = resourceNames("copy");
    const jsm = await jetstreamManager(arbiter.nc);
    const js = jetstream(arbiter.nc);
    const rulesLast = (await jsm.streams.info(names.rulesStream)).state.last_seq;
    for (let seq = 1; seq <= rulesLast; seq++) {
      const m = await jsm.streams.getMessage(names.rulesStream, { seq });
      await js.publish(target.rulesSubject, m!.data);
    }
    const decisionsLast = (await jsm.streams.info(names.decisionsStream)).state.last_seq;
    let altered: { decisionId: string; seq: number } | null = null;
    for (let seq = 1; seq <= decisionsLast; seq++) {
      const m = await jsm.streams.getMessage(names.decisionsStream, { seq });
      if (m === null) continue;
      let data = m.data;
      if (altered === null) {
        const lines = Buffer.from(data).toString("utf8").split("\n");
        const at = lines.findIndex((l) => l.includes('"permitted":true') && l.includes('"rejection":null'));
        if (at >= 0) {
          const record = JSON.parse(lines[at]!) as { decisionId: string };
          lines[at] = lines[at]!.replace('"permitted":true', '"permitted":false');
          data = Buffer.from(lines.join("\n"));
          altered = { decisionId: record.decisionId, seq: -1 };
        }
      }
      const h = headers();
      const signature = m.header?.get(BATCH_SIGNATURE_HEADER);
      if (signature) h.set(BATCH_SIGNATURE_HEADER, signature);
      const ack = await js.publish(target.decisionsSubject, data, { headers: h });
      if (altered !== null && altered.seq === -1) altered.seq = ack.seq;
    }
    expect(altered).not.toBeNull();
    const result = await runArbiter([
      "audit",
      "replay",
      "--servers",
      arbiter.server.url,
      "--prefix",
      "copy",
      "--admin-keys",
      arbiter.signer.publicKey,
      "--json",
    ]);
    expect(result.code).toBe(1);
    const report = JSON.parse(result.stdout);
    expect(report.mismatches).toBe(1);
    expect(report.mismatched).toHaveLength(1);
    expect(report.mismatched[0]).toMatchObject({
      decisionId: altered!.decisionId,
      seq: altered!.seq,
      differs: ["permitted"],
      recorded: { permitted: false },
      replayed: { permitted: true },
    });
    const threaded = await runArbiter([
      "audit",
      "replay",
      "--servers",
      arbiter.server.url,
      "--prefix",
      "copy",
      "--admin-keys",
      arbiter.signer.publicKey,
      "--threads",
      "2",
      "--json",
    ]);
    expect(threaded.code, threaded.stderr).toBe(1);
    expect(timeless(JSON.parse(threaded.stdout))).toEqual(timeless(report));
    const human = await runArbiter([
      "audit",
      "replay",
      "--servers",
      arbiter.server.url,
      "--prefix",
      "copy",
      "--admin-keys",
      arbiter.signer.publicKey,
    ]);
    expect(human.code).toBe(1);
    expect(human.stdout).toContain(altered!.decisionId);
    expect(human.stdout).toContain("1 MISMATCHED");
  });

  it("draws a progress bar on a terminal's stderr, and none when stderr is not one", async () => {
    const cli = fileURLToPath(new URL("../apps/cli/dist/main.js", import.meta.url));
    const command = `${process.execPath} ${cli} audit replay --servers ${arbiter.server.url}`;
    // script(1) runs the command on a pseudo-terminal and copies what it wrote there to its stdout.
    const onTerminal = await new Promise<{ code: number | null; out: string }>((resolve, reject) => {
      const child = spawn("script", ["-qec", command, "/dev/null"], { stdio: ["ignore", "pipe", "inherit"] });
      let out = "";
      child.stdout.on("data", (chunk: Buffer) => {
        out += chunk.toString();
      });
      child.on("error", reject);
      child.on("close", (code) => resolve({ code, out }));
    });
    expect(onTerminal.code).toBe(0);
    expect(onTerminal.out).toMatch(/\[#+-*\] 100% \d+ decisions, 0 mismatches/);
    const piped = await runArbiter(["audit", "replay", "--servers", arbiter.server.url]);
    expect(piped.code).toBe(0);
    expect(piped.stderr).toBe("");
    expect(piped.stdout).toContain("0 MISMATCHED");
  });

  it("replays only the window asked for", async () => {
    const all = await records();
    const host = provider.host.publicKey;
    const since = whatifSince.toISOString();
    const result = await runArbiter([
      "audit",
      "replay",
      "--servers",
      arbiter.server.url,
      "--since",
      since,
      "--host",
      host,
      "--json",
    ]);
    expect(result.code).toBe(0);
    const expected = all.filter((r) => r.host === host && Date.parse(r.evaluatedAt) >= whatifSince.getTime());
    expect(JSON.parse(result.stdout)).toMatchObject({ decisions: expected.length, mismatches: 0 });
    const lattice = await runArbiter([
      "audit",
      "replay",
      "--servers",
      arbiter.server.url,
      "--lattice",
      "nowhere",
      "--json",
    ]);
    expect(JSON.parse(lattice.stdout)).toMatchObject({ decisions: 0, mismatches: 0 });
  });
});

describe("arbiter audit whatif", () => {
  let dir: string;
  let candidate: string;

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "arbiter-whatif-"));
    candidate = join(dir, "candidate.json");
    // Revision two, and one more rule: the target component is denied. Exactly its requests flip.
    writeFileSync(
      candidate,
      JSON.stringify({
        version: 1,
        default: "allow",
        rules: [
          { id: "verified-providers", effect: "deny", when: 'kind == "startProvider" && !trust.verified' },
          { id: "watch-components", effect: "deny", mode: "dryrun", when: 'kind == "startComponent"' },
          { id: "no-target", effect: "deny", when: `subject != null && subject.id == "${TARGET}"` },
        ],
      }),
    );
  });

  it("counts exactly the decisions the candidate changes, grouped by rule, subject and host", async () => {
    const since = whatifSince.toISOString();
    const base = ["audit", "whatif", candidate, "--servers", arbiter.server.url, "--since", since];
    const result = await runArbiter([...base, "--json"]);
    expect(result.code).toBe(0);
    const report = JSON.parse(result.stdout);
    expect(report).toMatchObject({
      flipped: TARGET_REQUESTS,
      toDenied: TARGET_REQUESTS,
      toPermitted: 0,
      byRule: [{ rule: "no-target", flipped: TARGET_REQUESTS }],
      bySubject: [{ id: TARGET, imageRef: TARGET_IMAGE, flipped: TARGET_REQUESTS }],
      byHost: [{ flipped: TARGET_REQUESTS }],
    });
    expect(report.decisions).toBeGreaterThan(TARGET_REQUESTS + OTHER_REQUESTS);

    const gate = await runArbiter([...base, "--max-flipped", String(TARGET_REQUESTS - 1), "--json"]);
    expect(gate.code).toBe(1);
    expect(JSON.parse(gate.stdout)).toMatchObject({ passed: false, maxFlipped: TARGET_REQUESTS - 1 });
    const within = await runArbiter([...base, "--max-flipped", String(TARGET_REQUESTS)]);
    expect(within.code).toBe(0);
    expect(within.stdout).toContain(`${TARGET_REQUESTS} of`);
  });

  it("writes a self-contained HTML report, the recorded image's <script> kept as text", async () => {
    const page = join(dir, "report.html");
    const result = await runArbiter([
      "audit",
      "whatif",
      candidate,
      "--servers",
      arbiter.server.url,
      "--since",
      whatifSince.toISOString(),
      "--report",
      page,
    ]);
    expect(result.code).toBe(0);
    const html = readFileSync(page, "utf8");
    expect(html).toContain("<!DOCTYPE html>");
    expect(html).toContain(TARGET);
    expect(html).not.toMatch(/<script|<link|\bsrc=/i);
    expect(html).toContain("ghcr.io/example/&lt;script&gt;alert(&quot;whatif&quot;)&lt;/script&gt;:0.1.0");
  });

  it("refuses a --report it cannot write before reading any decision (here with no NATS to read)", async () => {
    for (const page of [join(dir, "no-such-folder", "report.html"), dir]) {
      const result = await runArbiter([
        "audit",
        "whatif",
        candidate,
        "--servers",
        "nats://127.0.0.1:1",
        "--report",
        page,
      ]);
      expect(result.code, result.stderr).toBe(2);
      expect(result.stderr).toContain(`--report ${page}: cannot write the report`);
    }
  });

  it("refuses an invalid candidate, naming it", async () => {
    const bad = join(dir, "bad.json");
    writeFileSync(bad, JSON.stringify({ version: 1, default: "maybe", rules: [] }));
    const result = await runArbiter(["audit", "whatif", bad, "--servers", arbiter.server.url, "--json"]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain("INVALID_RULES");
  });
});
