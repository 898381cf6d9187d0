import { writeFileSync } from "node:fs";
import { ArbiterError, ErrorCode, resourceNames } from "@arbiter/protocol";
import {
  compileRules,
  initialRulesetState,
  type ReplayCheck,
  type ReplayOutcome,
  RevisionCache,
  type RulesetState,
  type RulesetTrust,
  replayDecision,
  whatIf,
} from "@arbiter/rules";
import {
  type AuditWindow,
  type DecisionLog,
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
import { connectionOptions, type RulesFlags, read, readRulesFile } from "./rules.js";
import { type FlipGroup, renderWhatIfReport, type WhatIfReport } from "./whatif-report.js";

interface WindowFlags extends RulesFlags {
  since?: string;
  until?: string;
  lattice?: string;
  host?: string;
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
 * Replays every decision of `window` under the rules at its revision: the history is folded once
 * (more of it as decisions name later revisions), each record replayed by `replayDecision`.
 * `progress` is called now and then with the decisions replayed and the message being read.
 */
export async function runReplay(
  source: AuditSource,
  trust: RulesetTrust,
  window: AuditWindow,
  progress?: (decisions: number, seq: number, mismatches: number) => void,
): Promise<ReplayReport> {
  const started = performance.now();
  const cache = new RevisionCache(trust);
  await foldRuleEvents(source.rules, cache);
  const checks: Record<ReplayCheck, number> = {
    rules: 0,
    edge: 0,
    "edge-unrecorded": 0,
    signature: 0,
    reply: 0,
  };
  const mismatched: ReplayMismatch[] = [];
  let decisions = 0;
  let mismatches = 0;
  const miss = (m: ReplayMismatch) => {
    mismatches++;
    if (mismatched.length < MAX_LISTED) mismatched.push(m);
  };
  let lastSeq = 0;
  let soughtUpTo = 0;
  for await (const item of readDecisionWindow(source.decisions, window)) {
    decisions++;
    lastSeq = item.seq;
    if (progress !== undefined && (decisions & 1023) === 0) progress(decisions, item.seq, mismatches);
    const { record } = item;
    if (record === null) {
      miss({
        ...item,
        decisionId: null,
        revision: null,
        check: null,
        differs: [],
        recorded: null,
        replayed: null,
        reason: item.problem,
      });
      continue;
    }
    // A revision past the history read so far: written since, or never (read again once per revision).
    if (record.revision > cache.folded && record.revision > soughtUpTo) {
      soughtUpTo = record.revision;
      await foldRuleEvents(source.rules, cache, record.revision);
    }
    const result = replayDecision(record, cache.at(record.revision));
    checks[result.check]++;
    if (result.match) continue;
    miss({
      seq: item.seq,
      index: item.index,
      decisionId: record.decisionId,
      revision: record.revision,
      check: result.check,
      differs: result.differs,
      recorded: result.recorded,
      replayed: result.replayed,
      reason: result.reason,
    });
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
  ).action(async (flags: WindowFlags) => {
    const window = windowFrom(flags);
    const report = await read(flags, async (_admin, server, keysFrom, store, { adminKeys, nc }) => {
      const bar = progressBar(nc, resourceNames(resolvePrefix(flags)).decisionsStream);
      await bar.ready;
      try {
        const result = await runReplay(store, { adminKeys: new Set(adminKeys) }, window, bar.update);
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
            ? [`    recorded: ${describeOutcome(m.recorded)}`, `    replayed: ${describeOutcome(m.replayed)}`]
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
    emit(flags.json === true, report, () => {
      const groups = (title: string, rows: readonly string[]) =>
        rows.length === 0 ? [] : [`  by ${title}:`, ...rows.map((r) => `    ${r}`)];
      const n = (g: FlipGroup) => `${g.flipped} (${g.toPermitted} to permit, ${g.toDenied} to deny)`;
      return [
        `${report.flipped} of ${report.decisions} decisions flip under ${report.candidate} (${report.evaluated} evaluated by the rules; ${report.toPermitted} to permit, ${report.toDenied} to deny)`,
        ...groups(
          "deciding rule",
          report.byRule.map((g) => `${g.rule ?? "(default)"}: ${n(g)}`),
        ),
        ...groups(
          "subject",
          report.bySubject.map((g) => `${g.id ?? "-"} ${g.imageRef ?? "-"}: ${n(g)}`),
        ),
        ...groups(
          "host",
          report.byHost.map((g) => `${g.lattice} ${g.host}: ${n(g)}`),
        ),
        ...(report.maxFlipped === null
          ? []
          : [
              report.passed
                ? `within --max-flipped ${report.maxFlipped}`
                : `ABOVE --max-flipped ${report.maxFlipped}`,
            ]),
        ...(flags.report === undefined ? [] : [`report written to ${flags.report}`]),
      ].join("\n");
    });
    if (!report.passed) process.exitCode = ExitCode.Failed;
  });
}
