import { once } from "node:events";
import { createWriteStream } from "node:fs";
import type { Writable } from "node:stream";
import { ArbiterError, ErrorCode } from "@arbiter/protocol";
import {
  createRulesAdmin,
  createTrailVerifier,
  decisionLine,
  openTrailSource,
  parseTrailLine,
  retentionLine,
  ruleEventLine,
  TRAIL_EXPORT_FORMAT,
  type TrailExportHeader,
  type TrailReport,
  trailHeaderLine,
} from "@arbiter/store";
import type { NatsConnection } from "@nats-io/nats-core";
import type { Command } from "commander";
import {
  adminSigner,
  arbiterHome,
  type ConnectionFlags,
  connectNats,
  localAdminSeed,
  openExistingStore,
  reportServer,
  resolveAdminKeys,
  resolvePrefix,
  resolveServers,
  resolveWorkerKeys,
  SERVERS_HELP,
  serverOf,
} from "../context.js";
import { parseTime } from "../duration.js";
import { LineTooLongError, readFileLines } from "../file-lines.js";
import { ExitCode, emit } from "../output.js";
import { askWorkers } from "../worker-status.js";
import { checkWritableFile } from "../writable.js";

/** Flags of `audit verify`. */
interface VerifyFlags extends ConnectionFlags {
  adminKeys?: string;
  workerKeys?: string;
  since?: string;
  until?: string;
  file?: string;
}

/** Flags of `decisions export`. */
interface ExportFlags extends ConnectionFlags {
  since?: string;
  until?: string;
  format?: string;
  output?: string;
}

/** Where the admin keys a verification trusts came from. */
type KeysFrom = "workers" | "configured";

/** The `--since`/`--until` window, parsed. */
function windowOf(flags: { since?: string; until?: string }): { since?: Date; until?: Date } {
  const since = flags.since ? parseTime(flags.since, "--since") : undefined;
  const until = flags.until ? parseTime(flags.until, "--until") : undefined;
  // Swapped bounds would check nothing and pass: refused, as audit replay and whatif refuse them.
  if (since && until && until < since) {
    throw new ArbiterError(
      ErrorCode.InvalidConfig,
      `--until ${until.toISOString()} is before --since ${since.toISOString()}: the window is empty`,
    );
  }
  return { ...(since ? { since } : {}), ...(until ? { until } : {}) };
}

/** The admin keys configured for this command (flag, environment, the local key of `arbiter up`). */
function configuredAdminKeys(flags: VerifyFlags, where: string): string[] {
  const local = process.env["ARBITER_ADMIN_SEED"] || localAdminSeed(false);
  const keys = resolveAdminKeys(flags.adminKeys, local ? adminSigner() : undefined);
  if (keys.length === 0) {
    throw new ArbiterError(
      ErrorCode.InvalidConfig,
      `cannot tell which rule events the workers apply: ${where}, and no admin key is configured (--admin-keys, ARBITER_ADMIN_KEYS, ARBITER_ADMIN_SEED, or the local key of \`arbiter up\` in ${arbiterHome()})`,
    );
  }
  return keys;
}

/** The admin keys the running workers accept, else the configured ones. */
async function adminKeysOn(
  nc: NatsConnection,
  flags: VerifyFlags,
  statusSubject: string,
): Promise<{ keys: string[]; from: KeysFrom }> {
  const workers = await askWorkers(nc, statusSubject);
  if (workers.length > 0) return { keys: [...new Set(workers.flatMap((w) => w.adminKeys))], from: "workers" };
  return {
    keys: configuredAdminKeys(flags, `no worker answered on ${statusSubject} at ${serverOf(nc)}`),
    from: "configured",
  };
}

/** Verifies the streams on NATS. */
async function verifyStreams(flags: VerifyFlags, configured: string[]) {
  const window = windowOf(flags);
  const nc = await connectNats(resolveServers(flags), "arbiter-cli");
  try {
    reportServer(flags, nc);
    const store = await openExistingStore(nc, flags);
    const admin = await adminKeysOn(nc, flags, store.names.statusSubject);
    const source = openTrailSource(nc, { prefix: resolvePrefix(flags) });
    const before = await source.bounds();
    const verifier = createTrailVerifier({
      streams: { rules: before.rules.name, decisions: before.decisions.name },
      adminKeys: admin.keys,
      configured,
    });
    for await (const m of source.ruleEvents(before.rules.lastSeq)) verifier.ruleEvent(m.seq, m.texts[0]!);
    verifier.startDecisions({
      firstSeq: window.since ? null : before.decisions.firstSeq,
      lastSeq: window.until ? null : before.decisions.lastSeq,
      retainedFrom: before.decisions.firstSeq,
    });
    for await (const m of source.decisionMessages({ ...window, lastSeq: before.decisions.lastSeq })) {
      for (const [index, text] of m.texts.entries()) verifier.decision(m.seq, index, text);
    }
    // Records that aged out while they were being read are past retention too, not missing.
    const after = (await source.bounds()).decisions.firstSeq;
    if (after > before.decisions.firstSeq) {
      verifier.updateBounds({ ...(window.since ? {} : { firstSeq: after }), retainedFrom: after });
    }
    const snapshotProblem = await createRulesAdmin({ store, adminKeys: admin.keys }).snapshotProblem();
    await store.close();
    return {
      server: serverOf(nc),
      keysFrom: admin.from,
      rulesStream: before.rules.name,
      snapshotProblem,
      report: verifier.report(),
    };
  } finally {
    await nc.close();
  }
}

/**
 * The longest line an export holds: a record is at most one NATS message (whose `max_payload` is
 * at most 64 MiB), with its proof and the envelope around it well within the rest.
 */
const MAX_EXPORT_LINE_BYTES = 64 * 1024 * 1024;

/** The lines of a file, one at a time (never the whole file, nor a line past the bound, in memory). */
async function* fileLines(file: string): AsyncIterable<{ n: number; line: string }> {
  try {
    for await (const l of readFileLines(file, MAX_EXPORT_LINE_BYTES)) {
      if (l.line.trim() !== "") yield l;
    }
  } catch (err) {
    const detail =
      err instanceof LineTooLongError
        ? `${err.message}, which no line of an export is; not read further`
        : (err as Error).message;
    throw new ArbiterError(ErrorCode.InvalidConfig, `--file ${file}: ${detail}`, { cause: err });
  }
}

/** The most unreadable lines of a file listed one by one; the count covers them all. */
const MAX_LISTED_LINES = 100;

/** Verifies an export file, with no NATS: the rules lines first, then the decision lines. */
async function verifyFile(flags: VerifyFlags, file: string, configured: string[]) {
  const window = windowOf(flags);
  let header: TrailExportHeader | null = null;
  const invalid: { n: number; reason: string }[] = [];
  let invalidCount = 0;
  for await (const { n, line } of fileLines(file)) {
    const parsed = parseTrailLine(line);
    if (parsed.kind === "header") {
      header ??= parsed.header;
      break;
    }
    throw new ArbiterError(
      ErrorCode.InvalidConfig,
      `--file ${file}: line ${n} is not the header of an Arbiter export (${TRAIL_EXPORT_FORMAT}); write one with \`arbiter decisions export\``,
    );
  }
  if (header === null) {
    throw new ArbiterError(ErrorCode.InvalidConfig, `--file ${file}: empty, not an Arbiter export`);
  }
  const verifier = createTrailVerifier({
    streams: { rules: header.rules.name, decisions: header.decisions.name },
    adminKeys: configuredAdminKeys(flags, `the export ${file} is read without NATS`),
    configured,
  });
  let headers = 0;
  let retainedFrom = header.decisions.firstSeq;
  const invalidLine = (n: number, reason: string) => {
    invalidCount++;
    if (invalid.length < MAX_LISTED_LINES) invalid.push({ n, reason });
  };
  for await (const { n, line } of fileLines(file)) {
    const parsed = parseTrailLine(line);
    if (parsed.kind === "retention") {
      if (parsed.stream === header.decisions.name) retainedFrom = Math.max(retainedFrom, parsed.retainedFrom);
      else invalidLine(n, `a retention line of ${parsed.stream}`);
    } else if (parsed.kind === "header") {
      if (++headers > 1) invalidLine(n, "a second header");
    } else if (parsed.kind === "invalid") invalidLine(n, parsed.reason);
    else if (parsed.kind === "rule") {
      if (parsed.stream !== header.rules.name) invalidLine(n, `a rule event of ${parsed.stream}`);
      else verifier.ruleEvent(parsed.seq, parsed.text);
    } else if (parsed.stream !== header.decisions.name) {
      invalidLine(n, `a decision of ${parsed.stream}`);
    }
  }
  const windowed = { since: window.since ?? header.since, until: window.until ?? header.until };
  verifier.startDecisions({
    firstSeq: windowed.since ? null : retainedFrom,
    lastSeq: windowed.until ? null : header.decisions.lastSeq,
    retainedFrom,
  });
  for await (const { line } of fileLines(file)) {
    const parsed = parseTrailLine(line);
    if (parsed.kind !== "decision" || parsed.stream !== header.decisions.name) continue;
    if (window.since && parsed.time < window.since) continue;
    if (window.until && parsed.time > window.until) continue;
    verifier.decision(parsed.seq, parsed.index, parsed.text);
  }
  return { file, invalid, invalidCount, rulesStream: header.rules.name, report: verifier.report() };
}

/** One failure as a line of the text report. */
function failureLine(f: TrailReport["failures"][number], rulesStream: string): string {
  if (f.stream === rulesStream)
    return `  rule event ${f.seq}${f.eventId ? ` (${f.eventId})` : ""}: ${f.reason}`;
  if (f.index === null) return `  message ${f.seq}: ${f.reason}`;
  return `  message ${f.seq} record ${f.index}${f.decisionId ? ` (${f.decisionId})` : ""}: ${f.reason}`;
}

/** Registers `audit verify` on the `audit` command group. */
export function addVerifyCommand(audit: Command, options: (command: Command) => Command): void {
  options(
    audit
      .command("verify")
      .description(
        "verify the rules history (admin signatures, deployment, hash chain, snapshot head, no event missing) and every decision (its batch signature by a worker key enrolled at its revision, its inclusion proof, its place in its batch, no message missing), from the streams or from an export (--file, no NATS); exit 1 when anything fails",
      )
      .option(
        "--worker-keys <keys>",
        "worker keys (N…) to accept besides the enrolled ones (env ARBITER_WORKER_KEYS)",
      )
      .option("--since <time>", "only decisions from this time: ISO-8601, or an age such as 15m, 2h, 7d")
      .option("--until <time>", "only decisions up to this time: ISO-8601, or an age such as 15m, 2h, 7d")
      .option("--file <file>", "verify an export of `arbiter decisions export` instead of the streams"),
  ).action(async (flags: VerifyFlags) => {
    const configured = resolveWorkerKeys(flags.workerKeys);
    const checked = flags.file
      ? { source: "file" as const, ...(await verifyFile(flags, flags.file, configured)) }
      : { source: "nats" as const, ...(await verifyStreams(flags, configured)) };
    const { report } = checked;
    const invalid = "invalid" in checked ? checked.invalid : [];
    const invalidCount = "invalidCount" in checked ? checked.invalidCount : 0;
    const snapshotProblem = "snapshotProblem" in checked ? checked.snapshotProblem : null;
    const valid = report.valid && invalidCount === 0 && snapshotProblem === null;
    const fileFailures = invalid.map((l) => ({ line: l.n, reason: `line ${l.n} of the file: ${l.reason}` }));
    const failures = [...fileFailures, ...report.failures];
    const output = {
      source: checked.source,
      ...("server" in checked ? { server: checked.server, keysFrom: checked.keysFrom } : {}),
      ...("file" in checked ? { file: checked.file } : {}),
      deployment: report.deployment,
      rules: { ...report.rules, snapshotProblem },
      decisions: report.decisions,
      retention: report.retention,
      failures,
      failureCount: report.failureCount + invalidCount,
      valid,
    };
    emit(flags.json === true, output, () => {
      const d = report.decisions;
      const ofRules = report.failures.filter((f) => f.stream === checked.rulesStream);
      const ofDecisions = report.failures.filter((f) => f.stream !== checked.rulesStream);
      const lines = [
        `rules: ${report.rules.events} events of deployment ${report.deployment ?? "(none)"}, ${report.rules.applied} applied, ${report.rules.rejected} skipped, ${report.rules.failed} FAILED`,
        report.rules.broken
          ? `  the chain BREAKS at revision ${report.rules.broken.revision}${ofRules.some((f) => f.seq === report.rules.broken?.revision) ? "" : `: ${report.rules.broken.reason}`}${report.rules.afterBreak > 0 ? ` (${report.rules.afterBreak} events after it not applied)` : ""}`
          : "  the chain is whole",
        ...(snapshotProblem ? [`  the snapshot does not match: ${snapshotProblem}`] : []),
        ...ofRules.map((f) => failureLine(f, checked.rulesStream)),
        `decisions${d.firstSeq === null ? "" : ` (${d.messages} messages, seq ${d.firstSeq}–${d.lastSeq})`}: ${d.checked} checked, ${d.verified} verified, ${d.failed} FAILED${d.missing > 0 ? `, ${d.missing} MISSING` : ""}`,
        ...fileFailures.map((f) => `  ${f.reason}`),
        ...ofDecisions.map((f) => failureLine(f, checked.rulesStream)),
        ...(output.failureCount > failures.length
          ? [`  … and ${output.failureCount - failures.length} more failures`]
          : []),
        ...(report.retention ? [report.retention.note] : []),
      ];
      return lines.join("\n");
    });
    if (!valid) process.exitCode = ExitCode.Failed;
  });
}

/** Writes `line` and a newline, waiting while `out` is full. */
async function writeLine(out: Writable, line: string): Promise<void> {
  if (!out.write(`${line}\n`)) await once(out, "drain");
}

/** Registers `decisions export` on the `decisions` command group. */
export function addExportCommand(decisions: Command): void {
  decisions
    .command("export")
    .description(
      "write the rules history and the decision records with their proofs, one JSON object a line, each with its stream and seq, for a SIEM or cold storage; `arbiter audit verify --file` verifies it without NATS",
    )
    .option("--servers <urls>", SERVERS_HELP)
    .option("--prefix <prefix>", "stream/subject/bucket prefix (env ARBITER_PREFIX)")
    .option("--since <time>", "decisions from this time: ISO-8601, or an age such as 15m, 2h, 7d")
    .option("--until <time>", "decisions up to this time: ISO-8601, or an age such as 15m, 2h, 7d")
    .option("--format <format>", "the line format: jsonl (the only one)", "jsonl")
    .option("--output <file>", "write to this file instead of stdout")
    .option("-v, --verbose", "say on stderr which NATS server was used")
    .option("--json", "print the summary (counts, bounds) as JSON, on stderr when the export goes to stdout")
    .action(async (flags: ExportFlags) => {
      if (flags.format !== undefined && flags.format !== "jsonl") {
        throw new ArbiterError(
          ErrorCode.InvalidConfig,
          `--format ${JSON.stringify(flags.format)}: the only export format is jsonl`,
        );
      }
      const window = windowOf(flags);
      const prefix = resolvePrefix(flags);
      if (flags.output) checkWritableFile(flags.output, "--output", "the export");
      const nc = await connectNats(resolveServers(flags), "arbiter-cli");
      let out: Writable = process.stdout;
      const counts = { rules: 0, messages: 0, decisions: 0 };
      let header: TrailExportHeader;
      let retainedFrom = 0;
      const server = serverOf(nc);
      try {
        reportServer(flags, nc);
        await (await openExistingStore(nc, flags)).close();
        const source = openTrailSource(nc, { prefix });
        const bounds = await source.bounds();
        header = {
          format: TRAIL_EXPORT_FORMAT,
          exportedAt: new Date().toISOString(),
          prefix,
          since: window.since?.toISOString() ?? null,
          until: window.until?.toISOString() ?? null,
          rules: bounds.rules,
          decisions: bounds.decisions,
        };
        if (flags.output) {
          out = createWriteStream(flags.output);
          await new Promise<void>((resolve, reject) => {
            out.once("open", () => resolve());
            out.once("error", (err) =>
              reject(
                new ArbiterError(ErrorCode.InvalidConfig, `--output ${flags.output}: ${err.message}`, {
                  cause: err,
                }),
              ),
            );
          });
        }
        await writeLine(out, trailHeaderLine(header));
        for await (const m of source.ruleEvents(bounds.rules.lastSeq)) {
          counts.rules++;
          await writeLine(out, ruleEventLine(bounds.rules.name, m.seq, m.time, m.texts[0]!));
        }
        for await (const m of source.decisionMessages({ ...window, lastSeq: bounds.decisions.lastSeq })) {
          counts.messages++;
          for (const [index, text] of m.texts.entries()) {
            counts.decisions++;
            await writeLine(out, decisionLine(bounds.decisions.name, m.seq, index, m.time, text));
          }
        }
        // Records that aged out while the export ran are past retention, which the last line says.
        const after = (await source.bounds()).decisions.firstSeq;
        if (after > bounds.decisions.firstSeq) {
          retainedFrom = after;
          await writeLine(out, retentionLine(bounds.decisions.name, after));
        }
      } finally {
        await nc.close();
        if (out !== process.stdout) {
          out.end();
          await once(out, "finish").catch(() => {});
        }
      }
      const summary = {
        server,
        output: flags.output ?? "-",
        prefix,
        rules: { stream: header.rules.name, events: counts.rules },
        decisions: {
          stream: header.decisions.name,
          messages: counts.messages,
          records: counts.decisions,
          firstSeq: header.decisions.firstSeq,
          lastSeq: header.decisions.lastSeq,
        },
        ...(Math.max(retainedFrom, header.decisions.firstSeq) > 1
          ? {
              retention: `records before seq ${Math.max(retainedFrom, header.decisions.firstSeq)} are past retention`,
            }
          : {}),
      };
      const text = flags.json
        ? JSON.stringify(summary, null, 2)
        : `exported ${counts.rules} rule events and ${counts.decisions} decisions in ${counts.messages} messages${flags.output ? ` to ${flags.output}` : ""}${summary.retention ? `; ${summary.retention}` : ""}`;
      (flags.output ? process.stdout : process.stderr).write(`${text}\n`);
    });
}
