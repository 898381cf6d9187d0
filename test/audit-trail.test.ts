import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { resourceNames } from "@arbiter/protocol";
import { parseRulesDocument } from "@arbiter/rules";
import { decisionLine, openJetStreamStore, sealedDecisionTexts, signDecisionBatch } from "@arbiter/store";
import { createSigner, generateKey } from "@arbiter/trust";
import { jetstream, jetstreamManager, StorageType } from "@nats-io/jetstream";
import { headers } from "@nats-io/nats-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { configuredWorkerKey, type SingleNodeArbiter, startSingleNodeArbiter } from "./support/arbiter.js";
import { runArbiter } from "./support/cli.js";
import { exampleRulesText, fixtureJson } from "./support/fixtures.js";

// The attacker holds a worker's credentials, or the storage where an export lies: it edits an
// outcome, drops a message, adds a batch sealed with a key of its own, and appends a genuine rule
// event where it does not belong. `audit verify` must name exactly those records, in the streams
// and in an export, and pass an untouched history.

const names = resourceNames();
const encoder = new TextEncoder();

interface Failure {
  stream: string;
  seq: number;
  index: number | null;
  decisionId: string | null;
  eventId: string | null;
  reason: string;
}

interface Report {
  valid: boolean;
  decisions: { checked: number; verified: number; failed: number; messages: number };
  retention: { note: string } | null;
  failures: Failure[];
}

describe("audit verify and decisions export", () => {
  const key = configuredWorkerKey();
  const dir = mkdtempSync(join(tmpdir(), "arbiter-trail-"));
  let arbiter: SingleNodeArbiter;
  let env: Record<string, string>;
  let between: Date;

  beforeAll(async () => {
    arbiter = await startSingleNodeArbiter(key);
    env = {
      NATS_URL: arbiter.server.url,
      ARBITER_ADMIN_SEED: "",
      ARBITER_ADMIN_KEYS: arbiter.signer.publicKey,
      ARBITER_HOME: "/nonexistent-arbiter-home",
      ARBITER_LOG_LEVEL: "warn",
      ARBITER_WORKER_KEYS: key.workerKeys.join(","),
    };
    // Traffic under two revisions, one request at a time: one record per message.
    const template = fixtureJson("start-provider");
    for (let i = 0; i < 3; i++) {
      await arbiter.ask(encoder.encode(JSON.stringify({ ...template, requestId: `first-${i}` })));
    }
    between = new Date();
    await arbiter.admin.apply(parseRulesDocument(exampleRulesText()));
    await arbiter.worker.waitForRevision(3);
    for (let i = 0; i < 3; i++) {
      await arbiter.ask(encoder.encode(JSON.stringify({ ...template, requestId: `second-${i}` })));
    }
  });

  afterAll(async () => {
    await arbiter?.stop();
  });

  async function verify(args: string[]): Promise<{ code: number | null; report: Report; stderr: string }> {
    const result = await runArbiter(["audit", "verify", "--json", ...args], env);
    return { code: result.code, report: JSON.parse(result.stdout) as Report, stderr: result.stderr };
  }

  it("passes an untouched history, in the streams and in its export", async () => {
    const live = await verify([]);
    expect(live.code, live.stderr).toBe(0);
    expect(live.report).toMatchObject({
      valid: true,
      failures: [],
      retention: null,
      decisions: { checked: 6, verified: 6, failed: 0, messages: 6 },
    });
    const file = join(dir, "untouched.jsonl");
    const exported = await runArbiter(["decisions", "export", "--output", file, "--json"], env);
    expect(exported.code, exported.stderr).toBe(0);
    expect(JSON.parse(exported.stdout)).toMatchObject({
      server: arbiter.server.url,
      rules: { events: 3 },
      decisions: { records: 6 },
    });
    const lines = readFileSync(file, "utf8").trim().split("\n");
    expect(lines).toHaveLength(1 + 3 + 6);
    expect(JSON.parse(lines[1]!)).toMatchObject({ stream: names.rulesStream, seq: 1 });
    expect(JSON.parse(lines[4]!)).toMatchObject({ stream: names.decisionsStream, seq: 1, index: 0 });
    const offline = await runArbiter(["audit", "verify", "--file", file, "--json"], {
      ...env,
      NATS_URL: "nats://127.0.0.1:1",
    });
    expect(offline.code, offline.stderr).toBe(0);
    expect(JSON.parse(offline.stdout)).toMatchObject({ valid: true, source: "file", failures: [] });
  });

  it("audit verify and decisions export refuse an --until before --since, which would check nothing and pass", async () => {
    for (const args of [
      ["audit", "verify"],
      ["audit", "verify", "--file", join(dir, "untouched.jsonl")],
      ["decisions", "export"],
    ]) {
      const result = await runArbiter([...args, "--since", "1h", "--until", "2h"], {
        ...env,
        NATS_URL: "nats://127.0.0.1:1",
      });
      expect(result.code, `${args.join(" ")}: ${result.stderr}`).toBe(2);
      expect(result.stderr).toMatch(/--until \S+ is before --since \S+: the window is empty/);
    }
  });

  it("decisions export refuses an --output it cannot write before reading (here with no NATS to read)", async () => {
    for (const file of [join(dir, "no-such-folder", "trail.jsonl"), dir]) {
      const result = await runArbiter(["decisions", "export", "--output", file], {
        ...env,
        NATS_URL: "nats://127.0.0.1:1",
      });
      expect(result.code, result.stderr).toBe(2);
      expect(result.stderr).toContain(`--output ${file}: cannot write the export`);
    }
    expect(existsSync(join(dir, "no-such-folder"))).toBe(false);
  });

  it("fails a line of an export that is no record, and refuses a file that is no export", async () => {
    const file = join(dir, "garbage.jsonl");
    expect((await runArbiter(["decisions", "export", "--output", file], env)).code).toBe(0);
    const lines = readFileSync(file, "utf8").trim().split("\n");
    writeFileSync(file, `${[...lines, "not json"].join("\n")}\n`);
    const { code, report } = await verify(["--file", file]);
    expect(code).toBe(1);
    expect(report.failures).toEqual([
      { line: lines.length + 1, reason: `line ${lines.length + 1} of the file: not a JSON object` },
    ]);
    const other = join(dir, "other.jsonl");
    writeFileSync(other, '{"some":"log"}\n');
    const refused = await runArbiter(["audit", "verify", "--file", other], env);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain(`--file ${other}: line 1 is not the header of an Arbiter export`);
    const csv = await runArbiter(["decisions", "export", "--format", "csv"], env);
    expect(csv.code).toBe(2);
    expect(csv.stderr).toContain('--format "csv": the only export format is jsonl');
    const missing = await runArbiter(["audit", "verify", "--file", join(dir, "none.jsonl")], env);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/--file .*none\.jsonl: ENOENT/);
  });

  it("checks a window of decisions (--since, --until), in the streams and in its export", async () => {
    const since = await verify(["--since", between.toISOString()]);
    expect(since.code, since.stderr).toBe(0);
    expect(since.report).toMatchObject({ valid: true, decisions: { checked: 3, messages: 3 } });
    const upTo = await verify(["--until", between.toISOString()]);
    expect(upTo.code, upTo.stderr).toBe(0);
    expect(upTo.report).toMatchObject({ valid: true, decisions: { checked: 3, messages: 3 } });
    const file = join(dir, "window.jsonl");
    const exported = await runArbiter(
      ["decisions", "export", "--since", between.toISOString(), "--output", file],
      env,
    );
    expect(exported.code, exported.stderr).toBe(0);
    const lines = readFileSync(file, "utf8").trim().split("\n");
    // Every rule event, whatever the window; then the window's decisions.
    expect(lines).toHaveLength(1 + 3 + 3);
    expect(JSON.parse(lines[4]!)).toMatchObject({ stream: names.decisionsStream, seq: 4 });
    const offline = await verify(["--file", file]);
    expect(offline.code, JSON.stringify(offline.report)).toBe(0);
  });

  it("names exactly the records altered, dropped or injected in an export", async () => {
    const file = join(dir, "edited.jsonl");
    expect((await runArbiter(["decisions", "export", "--output", file], env)).code).toBe(0);
    const lines = readFileSync(file, "utf8").trim().split("\n");
    const decisionAt = (seq: number) =>
      lines.findIndex((l) => l.startsWith(`{"stream":"${names.decisionsStream}","seq":${seq},`));
    const idOf = (line: string) => (JSON.parse(line) as { record: { decisionId: string } }).record.decisionId;

    // A changed outcome (message 2), a dropped message (4), a batch sealed with an unenrolled key (7).
    const altered = lines[decisionAt(2)]!;
    expect(altered).toContain('"permitted":true');
    lines[decisionAt(2)] = altered.replace('"permitted":true', '"permitted":false');
    lines.splice(decisionAt(4), 1);
    const intruder = createSigner(generateKey("N").seed);
    const body = (JSON.parse(lines[decisionAt(5)]!) as { record: Record<string, unknown> }).record;
    const { proof: _proof, signature: _signature, ...unsealed } = body;
    const forged = JSON.stringify({
      ...unsealed,
      decisionId: "01FORGED",
      worker: { id: "w", publicKey: intruder.publicKey },
    });
    const batch = signDecisionBatch([{ decisionId: "01FORGED", body: Buffer.from(forged) }], intruder);
    const [sealed] = sealedDecisionTexts(batch.lines, batch.signature);
    lines.push(decisionLine(names.decisionsStream, 7, 0, new Date(), sealed!));
    // A genuine rule event (revision 2) appended again as revision 4: out of chain.
    const copied = lines[2]!.replace('"seq":2,', '"seq":4,');
    lines.splice(4, 0, copied);
    writeFileSync(file, `${lines.join("\n")}\n`);

    const { code, report } = await verify(["--file", file]);
    expect(code).toBe(1);
    expect(report.valid).toBe(false);
    const eventId = (JSON.parse(copied) as { event: { eventId: string } }).event.eventId;
    expect(report.failures.map((f) => [f.stream, f.seq, f.decisionId ?? f.eventId, f.reason])).toEqual([
      [names.rulesStream, 4, eventId, expect.stringContaining("signed to follow revision 1")],
      [names.decisionsStream, 2, idOf(altered), expect.stringMatching(/batch signature .* does not verify/)],
      [names.decisionsStream, 4, null, "message 4 is missing (deleted from the stream, or left out)"],
      [
        names.decisionsStream,
        7,
        "01FORGED",
        `signed by worker key ${intruder.publicKey}, which was never enrolled`,
      ],
    ]);
    const text = await runArbiter(["audit", "verify", "--file", file], env);
    expect(text.code).toBe(1);
    expect(text.stdout).toMatch(/message 4: message 4 is missing/);
  });

  it("names exactly the records altered, deleted or injected in a copy of the streams (--prefix)", async () => {
    const copy = resourceNames("copy");
    const jsm = await jetstreamManager(arbiter.nc);
    const js = jetstream(arbiter.nc);
    // Made without deny_delete, as whoever copies the streams may.
    await jsm.streams.add({
      name: copy.rulesStream,
      subjects: [copy.rulesSubject],
      storage: StorageType.File,
    });
    await jsm.streams.add({
      name: copy.decisionsStream,
      subjects: [copy.decisionsSubjects],
      storage: StorageType.File,
    });
    await (await openJetStreamStore(arbiter.nc, { prefix: "copy", createFanOut: false })).close();
    for (let seq = 1; seq <= 3; seq++) {
      const m = await jsm.streams.getMessage(names.rulesStream, { seq });
      await js.publish(copy.rulesSubject, m!.data);
    }
    const replayed = await jsm.streams.getMessage(names.rulesStream, { seq: 2 });
    await js.publish(copy.rulesSubject, replayed!.data);
    let alteredId = "";
    for (let seq = 1; seq <= 6; seq++) {
      const m = (await jsm.streams.getMessage(names.decisionsStream, { seq }))!;
      let data = m.string();
      if (seq === 3) {
        alteredId = (JSON.parse(data) as { decisionId: string }).decisionId;
        data = data.replace('"permitted":true', '"permitted":false');
      }
      await js.publish(copy.decisionsSubject, data, { headers: m.header });
    }
    await jsm.streams.deleteMessage(copy.decisionsStream, 5);
    const intruder = createSigner(generateKey("N").seed);
    const genuine = JSON.parse(
      (await jsm.streams.getMessage(names.decisionsStream, { seq: 6 }))!.string(),
    ) as Record<string, unknown>;
    const forged = JSON.stringify({
      ...genuine,
      decisionId: "01INJECTED",
      worker: { id: "w", publicKey: intruder.publicKey },
    });
    const batch = signDecisionBatch([{ decisionId: "01INJECTED", body: Buffer.from(forged) }], intruder);
    const h = headers();
    h.set("Arbiter-Batch-Signature", batch.signature);
    await js.publish(copy.decisionsSubject, batch.lines, { headers: h });

    const { code, report } = await verify(["--prefix", "copy"]);
    expect(code).toBe(1);
    const replayedId = (JSON.parse(replayed!.string()) as { eventId: string }).eventId;
    expect(report.failures.map((f) => [f.stream, f.seq, f.decisionId ?? f.eventId, f.reason])).toEqual([
      [copy.rulesStream, 4, replayedId, expect.stringContaining("signed to follow revision 1")],
      [copy.decisionsStream, 3, alteredId, expect.stringMatching(/batch signature .* does not verify/)],
      [copy.decisionsStream, 5, null, "message 5 is missing (deleted from the stream, or left out)"],
      [
        copy.decisionsStream,
        7,
        "01INJECTED",
        `signed by worker key ${intruder.publicKey}, which was never enrolled`,
      ],
    ]);
    // The original streams still pass.
    expect((await verify([])).report.valid).toBe(true);
  });
});
