import { writeFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import { ArbiterError, ErrorCode, resourceNames } from "@arbiter/protocol";
import {
  compileRules,
  initialRulesetState,
  type ReplayCheck,
  type ReplayOutcome,
  RevisionCache,
  type RulesetState,
  type RulesetTrust,
  type StoredRuleEvent,
  whatIf,
} from "@arbiter/rules";
import {
  type AuditWindow,
  type DecisionLog,
  decisionReadFilter,
  foldRuleEvents,
  type RuleEventStore,
  readDecisionWindow,
} from "@arbiter/store";
import { jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import type { Command } from "commander";
import { resolvePrefix } from "../context.js";
import { parseTime } from "../duration.js";
import { checkHostFlag, parseIntegerFlag } from "../flags.js";
import { ExitCode, emit } from "../output.js";
import { checkWritableFile } from "../writable.js";
import { type ChunkResult, noChecks, type ReplayChunk, replayChunk, replayMismatch } from "./replay-chunk.js";
import { ReplayPool } from "./replay-pool.js";
import { connectionOptions, type RulesFlags, read, readRulesFile } from "./rules.js";
import { type FlipGroup, renderWhatIfReport, renderWhatIfText, type WhatIfReport } from "./whatif-report.js";

interface WindowFlags extends RulesFlags {
  since?: string;
  until?: string;
  lattice?: string;
  host?: string;
}

interface ReplayFlags extends WindowFlags {
  threads?: string;
}

interface WhatIfFlags extends WindowFlags {
  maxFlipped?: string;
  report?: string;
}

/** The most mismatches or unreadable records listed one by one; the counts cover them all. */
const MAX_LISTED = 100;
/** The most groups of each kind what-if lists (those with the most flips); `groups` counts them all. */
export const MAX_GROUPS = 100;

/** One decision replay did not reproduce, or a record it could not read. */
export interface ReplayMismatch {
  readonly seq: number;
  readonly index: number;
  readonly decisionId: string | null;
  readonly revision: number | null;
  readonly check: ReplayCheck | null;
  /** The fields that differ. */
  readonly differs: readonly string[];
  readonly recorded: ReplayOutcome | null;
  readonly replayed: ReplayOutcome | null;
  readonly reason: string | null;
}

/** What `arbiter audit replay` found. */
export interface ReplayReport {
  readonly deployment: string | null;
  /** The last rules revision folded. */
  readonly revisions: number;
  readonly decisions: number;
  readonly matched: number;
  /** Decisions not reproduced, and records that could not be read, counted together. */
  readonly mismatches: number;
  /** The first {@link MAX_LISTED} of them. */
  readonly mismatched: readonly ReplayMismatch[];
  /** How many records each kind of check replayed. */
  readonly checks: Readonly<Record<ReplayCheck, number>>;
  readonly seconds: number;
  readonly decisionsPerSecond: number;
}

/** Where replay and what-if read: the rules history and the decision log. */
export interface AuditSource {
  readonly rules: RuleEventStore;
  readonly decisions: DecisionLog;
}

/**
 * Where records are replayed: on the main thread only (`count` 0), or also in `count` worker
 * threads once `after` records have been read (a small window is not worth starting them).
 */
export interface ReplayThreads {
  readonly count: number;
  readonly after: number;
}

/** Records read before `audit replay` starts its worker threads, unless told how many to use. */
export const THREADS_AFTER = 20_000;

/**
 * The threads `--threads` asks for: that many from the first record (0: the main thread only),
 * or, without the flag, one per core beyond two once {@link THREADS_AFTER} records have been read.
 * One thread beside the reader costs about what it saves (a record replayed in a thread costs
 * about as much as read and replayed on the main thread, its copy there included), so threads
 * pay only two or more at a time, with cores to spare for the reader and a local nats-server.
 */
export function replayThreads(flag: string | undefined): ReplayThreads {
  if (flag === undefined) return { count: Math.max(availableParallelism() - 2, 0), after: THREADS_AFTER };
  return { count: parseIntegerFlag(flag, "--threads", { min: 0, max: 64 }), after: 0 };
}

/** Records replayed together, on the main thread or in a worker thread. */
const CHUNK_RECORDS = 256;

/**
 * Replays every decision of `window` under the rules at its revision: the history is folded once
 * (more of it as decisions name later revisions), each record parsed once and replayed by
 * `replayDecision`, in chunks, on the main thread or in worker threads (each folding the history
 * once), the results taken in stream order. `progress` is called now and then with the decisions
 * replayed and the message being read.
 */
export async function runReplay(
  source: AuditSource,
  trust: RulesetTrust,
  window: AuditWindow,
  progress?: (decisions: number, seq: number, mismatches: number) => void,
  threads: ReplayThreads = { count: 0, after: 0 },
): Promise<ReplayReport> {
  const started = performance.now();
  const cache = new RevisionCache(trust);
  const events: StoredRuleEvent[] = [];
  const keep = (event: StoredRuleEvent) => void events.push(event);
  await foldRuleEvents(source.rules, cache, undefined, keep);
  const checks = noChecks();
  const mismatched: ReplayMismatch[] = [];
  let decisions = 0;
  let mismatches = 0;
  const miss = (m: ReplayMismatch) => {
    mismatches++;
    if (mismatched.length < MAX_LISTED) mismatched.push(m);
  };
  let lastSeq = 0;
  let soughtUpTo = 0;
  const merge = async (result: ChunkResult) => {
    decisions += result.decisions;
    for (const check of Object.keys(checks) as ReplayCheck[]) checks[check] += result.checks[check];
    for (const entry of result.entries) {
      if (entry.kind === "mismatch") {
        miss(entry.mismatch);
        continue;
      }
      // A revision past the history read so far: written since, or never (read again once per revision).
      const { record } = entry;
      if (record.revision > cache.folded && record.revision > soughtUpTo) {
        soughtUpTo = record.revision;
        await foldRuleEvents(source.rules, cache, record.revision, keep);
      }
      const { check, mismatch } = replayMismatch(entry.seq, entry.index, record, cache.at(record.revision));
      checks[check]++;
      if (mismatch !== null) miss(mismatch);
    }
    if (result.lastSeq > 0) lastSeq = result.lastSeq;
    progress?.(decisions, lastSeq, mismatches);
  };

  let pool: ReplayPool | null = null;
  const inFlight: Promise<ChunkResult>[] = [];
  let read = 0;
  let chunk: ReplayChunk = { seqs: [], indexes: [], texts: [] };
  const flush = async () => {
    const full = chunk;
    if (full.texts.length === 0) return;
    chunk = { seqs: [], indexes: [], texts: [] };
    if (pool === null && threads.count > 0 && read >= threads.after) {
      pool = new ReplayPool(threads.count, { trust, events: [...events], window });
    }
    if (pool === null) return merge(replayChunk(full, cache, window));
    const replayed = pool.submit(full);
    // Awaited in turn below; a failure is thrown there, not reported as unhandled meanwhile.
    replayed.catch(() => undefined);
    inFlight.push(replayed);
    while (inFlight.length >= threads.count * 2) await merge(await inFlight.shift()!);
  };
  try {
    for await (const stored of source.decisions.read(decisionReadFilter(window))) {
      read++;
      chunk.seqs.push(stored.seq);
      chunk.indexes.push(stored.index);
      chunk.texts.push(stored.text);
      if (chunk.texts.length >= CHUNK_RECORDS) await flush();
    }
    await flush();
    while (inFlight.length > 0) await merge(await inFlight.shift()!);
  } finally {
    await (pool as ReplayPool | null)?.close();
  }
  progress?.(decisions, lastSeq, mismatches);
  const seconds = (performance.now() - started) / 1000;
  return {
    deployment: cache.latest.deployment,
    revisions: cache.folded,
    decisions,
    matched: decisions - mismatches,
    mismatches,
    mismatched,
    checks,
    seconds,
    decisionsPerSecond: seconds > 0 ? Math.round(decisions / seconds) : 0,
  };
}

/** The rules of a candidate document, as a ruleset to evaluate recorded requests under. */
export function candidateRuleset(file: string): RulesetState {
  const document = readRulesFile(file);
  return { ...initialRulesetState(), document, compiled: compileRules(document) };
}

type Tally = { flipped: number; toPermitted: number; toDenied: number };

/** Evaluates every decision of `window` under `candidate` and groups those whose `permitted` flips. */
export async function runWhatIf(
  decisions: DecisionLog,
  candidate: RulesetState,
  window: AuditWindow,
  options: { readonly candidateName: string; readonly maxFlipped: number | null },
): Promise<WhatIfReport> {
  const byRule = new Map<string | null, Tally>();
  const bySubject = new Map<string, Tally & { id: string | null; imageRef: string | null }>();
  const byHost = new Map<string, Tally & { lattice: string; host: string }>();
  const total: Tally = { flipped: 0, toPermitted: 0, toDenied: 0 };
  let read = 0;
  let evaluated = 0;
  let unreadable = 0;
  const count = (tally: Tally, toPermitted: boolean) => {
    tally.flipped++;
    if (toPermitted) tally.toPermitted++;
    else tally.toDenied++;
  };
  for await (const item of readDecisionWindow(decisions, window)) {
    read++;
    if (item.record === null) {
      unreadable++;
      continue;
    }
    const result = whatIf(item.record, candidate);
    if (result.evaluated) evaluated++;
    if (!result.flipped || result.candidate === null) continue;
    const toPermitted = result.candidate.permitted;
    count(total, toPermitted);
    const rule = result.candidate.decidingRule;
    count(
      getOr(byRule, rule, () => ({ flipped: 0, toPermitted: 0, toDenied: 0 })),
      toPermitted,
    );
    const subject = result.subject;
    count(
      getOr(bySubject, JSON.stringify([subject?.id ?? null, subject?.imageRef ?? null]), () => ({
        id: subject?.id ?? null,
        imageRef: subject?.imageRef ?? null,
        flipped: 0,
        toPermitted: 0,
        toDenied: 0,
      })),
      toPermitted,
    );
    count(
      getOr(byHost, JSON.stringify([result.lattice, result.host]), () => ({
        lattice: result.lattice,
        host: result.host,
        flipped: 0,
        toPermitted: 0,
        toDenied: 0,
      })),
      toPermitted,
    );
  }
  // Hosts choose subject ids and images: a flood of distinct ones must not make the report as large.
  const sorted = <T extends FlipGroup>(groups: Iterable<T>) =>
    [...groups].sort((a, b) => b.flipped - a.flipped).slice(0, MAX_GROUPS);
  return {
    candidate: options.candidateName,
    window: {
      since: window.since?.toISOString() ?? null,
      until: window.until?.toISOString() ?? null,
      lattice: window.lattice ?? null,
      host: window.host ?? null,
    },
    decisions: read,
    evaluated,
    unreadable,
    ...total,
    groups: { rules: byRule.size, subjects: bySubject.size, hosts: byHost.size },
    byRule: sorted([...byRule].map(([rule, tally]) => ({ rule, ...tally }))),
    bySubject: sorted(bySubject.values()),
    byHost: sorted(byHost.values()),
    maxFlipped: options.maxFlipped,
    passed: options.maxFlipped === null || total.flipped <= options.maxFlipped,
  };
}

function getOr<K, V>(map: Map<K, V>, key: K, make: () => V): V {
  let value = map.get(key);
  if (value === undefined) {
    value = make();
    map.set(key, value);
  }
  return value;
}

/** The window the flags ask for. Throws INVALID_CONFIG for a bad time, host or empty window. */
function windowFrom(flags: WindowFlags): AuditWindow {
  const since = flags.since ? parseTime(flags.since, "--since") : undefined;
  const until = flags.until ? parseTime(flags.until, "--until") : undefined;
  if (since && until && until < since) {
    throw new ArbiterError(
      ErrorCode.InvalidConfig,
      `--until ${until.toISOString()} is before --since ${since.toISOString()}: the window is empty`,
    );
  }
  if (flags.host !== undefined) checkHostFlag(flags.host);
  return {
    ...(since ? { since } : {}),
    ...(until ? { until } : {}),
    ...(flags.lattice !== undefined ? { lattice: flags.lattice } : {}),
    ...(flags.host !== undefined ? { host: flags.host } : {}),
  };
}

const withWindow = (command: Command) =>
  connectionOptions(
    command
      .option(
        "--since <time>",
        "only decisions evaluated from this time: ISO-8601, or an age such as 15m, 2h, 7d",
      )
      .option("--until <time>", "only decisions evaluated up to this time: ISO-8601, or an age")
      .option("--lattice <lattice>", "only decisions of this lattice")
      .option("--host <key>", "only decisions of this host public key (N…, in full)"),
  );

/** A progress bar on stderr, drawn only when stderr is a terminal, at most ten times a second. */
function progressBar(
  nc: NatsConnection,
  stream: string,
): {
  update: (decisions: number, seq: number, mismatches: number) => void;
  done: () => void;
  ready: Promise<void>;
} {
  const tty = process.stderr.isTTY === true;
  let last = 0;
  let lastSeq = 0;
  let drawn = false;
  const started = performance.now();
  const ready = tty
    ? jetstreamManager(nc)
        .then((jsm) => jsm.streams.info(stream))
        .then((info) => {
          lastSeq = info.state.last_seq;
        })
        .catch(() => undefined)
    : Promise.resolve();
  return {
    ready,
    update(decisions, seq, mismatches) {
      if (!tty) return;
      const now = performance.now();
      if (now - last < 100) return;
      last = now;
      const fraction = lastSeq > 0 ? Math.min(seq / lastSeq, 1) : 0;
      const width = 30;
      const filled = Math.round(fraction * width);
      const rate = Math.round(decisions / ((now - started) / 1000));
      process.stderr.write(
        `\r[${"#".repeat(filled)}${"-".repeat(width - filled)}] ${Math.round(fraction * 100)}% ${decisions} decisions, ${mismatches} mismatches, ${rate}/s`,
      );
      drawn = true;
    },
    done() {
      if (drawn) process.stderr.write("\r\u001b[K");
    },
  };
}

function describeOutcome(o: ReplayOutcome | null): string {
  if (o === null) return "(none)";
  const rules = o.decidingRule === null ? "" : ` by ${o.decidingRule}`;
  return `${o.permitted ? "PERMIT" : "DENY"}${rules}: ${o.message}`;
}

/** Adds `audit replay` and `audit whatif` to the `audit` command. */
export function addReplayCommands(audit: Command): void {
  withWindow(
    audit
      .command("replay")
      .description(
        "re-evaluate every recorded decision under the rules at its revision, with its recorded request, time and trust result; exit 1 when any does not come out as recorded",
      ),
  )
    .option(
      "--threads <n>",
      "worker threads that replay records beside the read (0: none; default: one per core beyond two, once the window passes 20000 records)",
    )
    .action(async (flags: ReplayFlags) => {
      const window = windowFrom(flags);
      const threads = replayThreads(flags.threads);
      const report = await read(flags, async (_admin, server, keysFrom, store, { adminKeys, nc }) => {
        const bar = progressBar(nc, resourceNames(resolvePrefix(flags)).decisionsStream);
        await bar.ready;
        try {
          const result = await runReplay(
            store,
            { adminKeys: new Set(adminKeys) },
            window,
            bar.update,
            threads,
          );
          return { server, keysFrom, ...result };
        } finally {
          bar.done();
        }
      });
      emit(flags.json === true, report, () =>
        [
          `replayed ${report.decisions} decisions under ${report.revisions} revisions of deployment ${report.deployment ?? "(none)"}: ${report.matched} as recorded, ${report.mismatches} MISMATCHED (${report.decisionsPerSecond} decisions/s)`,
          `  checks: ${Object.entries(report.checks)
            .map(([k, n]) => `${k} ${n}`)
            .join(", ")}`,
          ...report.mismatched.flatMap((m) => [
            `  message ${m.seq} record ${m.index}${m.decisionId ? ` (${m.decisionId}, revision ${m.revision})` : ""}: ${
              m.reason ?? `${m.differs.join(", ")} differ`
            }`,
            ...(m.recorded
              ? [
                  `    recorded: ${describeOutcome(m.recorded)}`,
                  `    replayed: ${describeOutcome(m.replayed)}`,
                ]
              : []),
          ]),
        ].join("\n"),
      );
      if (report.mismatches > 0) process.exitCode = ExitCode.Failed;
    });

  withWindow(
    audit
      .command("whatif")
      .argument("<file>", "the candidate rules document (YAML or JSON; - for stdin)")
      .description(
        "evaluate every recorded decision under a candidate rules document and count those whose answer (permitted) would differ, grouped by deciding rule, subject and host",
      )
      .option("--max-flipped <n>", "exit 1 when more than this many decisions flip (a CI gate)")
      .option(
        "--report <file.html>",
        "also write the summary and the grouped tables as a self-contained HTML page",
      ),
  ).action(async (file: string, flags: WhatIfFlags) => {
    const window = windowFrom(flags);
    const maxFlipped =
      flags.maxFlipped === undefined ? null : parseIntegerFlag(flags.maxFlipped, "--max-flipped", { min: 0 });
    const candidate = candidateRuleset(file);
    if (flags.report !== undefined) checkWritableFile(flags.report, "--report", "the report");
    const report = await read(flags, async (_admin, server, _keysFrom, store) => ({
      server,
      ...(await runWhatIf(store.decisions, candidate, window, {
        candidateName: file === "-" ? "<stdin>" : file,
        maxFlipped,
      })),
    }));
    if (flags.report !== undefined) {
      try {
        writeFileSync(flags.report, renderWhatIfReport(report, new Date()));
      } catch (err) {
        throw new ArbiterError(
          ErrorCode.InvalidConfig,
          `--report ${flags.report}: cannot write the report: ${(err as Error).message}`,
          { cause: err },
        );
      }
    }
    emit(flags.json === true, report, () => renderWhatIfText(report, flags.report));
    if (!report.passed) process.exitCode = ExitCode.Failed;
  });
}
