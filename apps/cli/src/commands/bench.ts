import { writeFileSync } from "node:fs";
import { resolve } from "node:path";
import { ArbiterError, ErrorCode } from "@arbiter/protocol";
import { Command } from "commander";
import type { AloneRun } from "../bench/convergence-alone.js";
import {
  type ChangesMode,
  type ConvergenceReport,
  type ConvergenceRun,
  runConvergenceBench,
} from "../bench/convergence-bench.js";
import {
  type DecisionsBenchOptions,
  type DecisionsBenchReport,
  isBenchInterruptedError,
  type PhaseReport,
  runDecisionsBench,
  WORKER_CLI_MAIN,
  workerChildEnv,
} from "../bench/decisions-bench.js";
import { isExecutableFile, OPA_BUILD_HINT, opaPolicyServerPath } from "../bench/opa-peer.js";
import { addReplayBenchOptions, type ReplayBenchFlags, replayPhase } from "../bench/replay-phase.js";
import { parseIntegerFlag } from "../flags.js";
import { createLogger } from "../lifecycle.js";
import { emit, reportError } from "../output.js";

interface BenchFlags extends ReplayBenchFlags {
  duration: string;
  warmup: string;
  concurrency: string;
  timeout: string;
  workerCpuProf?: string;
  out?: string;
  json?: boolean;
  opa: boolean;
  opaInstances: string;
  convergence: boolean;
  convergenceOnly?: boolean;
  convergenceDecisions: string;
  convergenceHosts: string;
  convergenceWorkers: string;
  convergenceChanges: string;
}

/** The whole report of `arbiter bench`: the decisions phases (unless skipped) and the convergence runs. */
type BenchReport = Partial<DecisionsBenchReport> & { readonly convergence: ConvergenceReport | null };

/**
 * `arbiter bench`: decisions/s and latency of one worker beside a bare NATS echo responder and the
 * OPA example's policy server (one, and several in a queue group) when the peers cache has it; then
 * revocation convergence beside bare overrides.
 */
export function benchCommand(): Command {
  return addReplayBenchOptions(new Command("bench"))
    .description(
      "benchmark one decision worker (decision log on) against a bare NATS echo responder and the OPA example's policy server (from the peers cache), same embedded nats-server, same run; then revocation convergence (a rules change flipping half of the decisions cached by reference hosts) against the same overrides published bare",
    )
    .option("--duration <s>", "measured seconds per responder", "10")
    .option("--warmup <s>", "unmeasured seconds of load before each measurement", "2")
    .option("--concurrency <n>", "concurrent requesters (each waits for its answer)", "64")
    .option("--timeout <ms>", "per-request timeout; a late answer counts as an error", "1000")
    .option("--no-opa", "skip the OPA policy server phases")
    .option("--opa-instances <n>", "OPA policy servers in the queue-group phase", "2")
    .option("--no-convergence", "skip the revocation convergence runs")
    .option("--convergence-only", "run only the revocation convergence runs")
    .option(
      "--convergence-decisions <n>",
      "cached decisions in the convergence runs, spread over the hosts",
      "10000",
    )
    .option("--convergence-hosts <n>", "reference host clients in the convergence runs", "100")
    .option(
      "--convergence-changes <list>",
      "for each worker count, one run per way the hosts hear overrides: shared (every host on the one changes topic) or per-host (each on <topic>.<host key>, workers with --changes-per-host)",
      "shared,per-host",
    )
    .option(
      "--convergence-workers <list>",
      "one convergence run per entry, with that many workers (comma-separated)",
      "1,3",
    )
    .option(
      "--worker-cpu-prof <dir>",
      "run the workers under node --cpu-prof, writing their profiles into <dir>",
    )
    .option("--out <file>", "also write the JSON report to <file>")
    .option("--json", "print the whole report as JSON")
    .action(async (flags: BenchFlags) => {
      const json = flags.json === true;
      const controller = new AbortController();
      let signals = 0;
      const onSignal = () => {
        // The first signal stops the load and cleans up; a second one leaves at once (the exit
        // hooks still kill every child process by pid).
        if (++signals > 1) process.exit(130);
        controller.abort();
      };
      process.on("SIGINT", onSignal);
      process.on("SIGTERM", onSignal);
      const opaInstances = parseIntegerFlag(flags.opaInstances, "--opa-instances", { min: 1 });
      const opaBin = opaPolicyServerPath();
      let opa: DecisionsBenchOptions["opa"];
      if (!flags.opa) opa = { skipped: "--no-opa" };
      else if (isExecutableFile(opaBin)) opa = { bin: opaBin, instances: opaInstances };
      else {
        opa = { skipped: `the OPA policy server is not in ${opaBin}; \`${OPA_BUILD_HINT}\` builds it` };
        process.stderr.write(`arbiter bench: OPA phases skipped: ${opa.skipped}\n`);
      }
      const convergenceDecisions = parseIntegerFlag(flags.convergenceDecisions, "--convergence-decisions", {
        min: 2,
      });
      const convergenceHosts = parseIntegerFlag(flags.convergenceHosts, "--convergence-hosts", { min: 1 });
      const convergenceWorkers = flags.convergenceWorkers
        .split(",")
        .map((n) => parseIntegerFlag(n.trim(), "--convergence-workers", { min: 1 }));
      const convergenceChanges = parseChangesModes(flags.convergenceChanges);
      if (flags.convergenceOnly && !flags.convergence) {
        throw new ArbiterError(
          ErrorCode.InvalidConfig,
          "--convergence-only and --no-convergence exclude each other",
        );
      }
      try {
        const replay = replayPhase(flags, controller.signal);
        if (replay.only) {
          const replayed = await replay.run();
          emit(json, { replay: replayed }, () => replay.human(replayed));
          return;
        }
        const log = createLogger("arbiter-bench");
        const decisions = flags.convergenceOnly
          ? {}
          : await runDecisionsBench({
              opa,
              concurrency: parseIntegerFlag(flags.concurrency, "--concurrency", { min: 1 }),
              warmupMs: seconds(flags.warmup, "--warmup", true),
              durationMs: seconds(flags.duration, "--duration", false),
              timeoutMs: parseIntegerFlag(flags.timeout, "--timeout", { min: 1 }),
              ...(flags.workerCpuProf ? { workerCpuProfDir: resolve(flags.workerCpuProf) } : {}),
              signal: controller.signal,
              log,
            });
        const convergence = flags.convergence
          ? await runConvergenceBench({
              decisions: convergenceDecisions,
              hosts: convergenceHosts,
              workers: convergenceWorkers,
              changes: convergenceChanges,
              timeoutMs: 120_000,
              childEnv: workerChildEnv(),
              cliMain: WORKER_CLI_MAIN,
              ...(flags.workerCpuProf ? { workerCpuProfDir: resolve(flags.workerCpuProf) } : {}),
              signal: controller.signal,
              log,
            })
          : null;
        const replayed = flags.convergenceOnly ? null : await replay.run();
        const report: BenchReport = { ...decisions, convergence };
        const full = { ...report, replay: replayed };
        if (flags.out) writeFileSync(flags.out, `${JSON.stringify(full, null, 2)}\n`);
        emit(json, full, () =>
          replayed === null ? humanReport(report) : `${humanReport(report)}\n${replay.human(replayed)}`,
        );
      } catch (err) {
        if (!isBenchInterruptedError(err)) throw err;
        reportError(err, json);
        process.exitCode = 130;
      } finally {
        process.off("SIGINT", onSignal);
        process.off("SIGTERM", onSignal);
      }
    });
}

function seconds(value: string, flag: string, zeroAllowed: boolean): number {
  const s = Number(value);
  if (!Number.isFinite(s) || s < 0 || (s === 0 && !zeroAllowed)) {
    throw new ArbiterError(
      ErrorCode.InvalidConfig,
      `${flag} ${JSON.stringify(value)}: expected a number of seconds`,
    );
  }
  return Math.round(s * 1000);
}

function humanReport(report: BenchReport): string {
  const parts: string[] = [];
  if (report.benchmark === "decisions") parts.push(decisionsReport(report as DecisionsBenchReport));
  if (report.convergence !== null) parts.push(convergenceReport(report.convergence));
  return parts.join("\n\n");
}

/** The `--convergence-changes` list: `shared`, `per-host`, or both, comma-separated. */
function parseChangesModes(list: string): ChangesMode[] {
  const modes: ChangesMode[] = [];
  for (const raw of list.split(",")) {
    const mode = raw.trim();
    if (mode !== "shared" && mode !== "per-host") {
      throw new ArbiterError(
        ErrorCode.InvalidConfig,
        `--convergence-changes ${JSON.stringify(list)}: ${JSON.stringify(mode)} is neither shared nor per-host`,
      );
    }
    if (!modes.includes(mode)) modes.push(mode);
  }
  return modes;
}

function convergenceReport(c: ConvergenceReport): string {
  const cpu = (ms: ConvergenceRun["arbiter"]["cpuMs"]) =>
    [ms.workers, ms.natsServer, ms.hosts].map((v) => (v === null ? "?" : String(v))).join("/");
  const row = (r: ConvergenceRun) => {
    const a = r.arbiter;
    const b = r.baseline;
    return [
      `${r.workers} worker(s), ${r.decisions} cached decisions on ${r.hosts} hosts, ${r.flipped} flipped (revision ${r.revision}), ${r.changes === "per-host" ? "each host on its own changes subject" : "every host on the one changes topic"}:`,
      `  arbiter:  p50 ${a.perHostMs.p50} ms, max ${a.perHostMs.max} ms, ${a.overridesPerSecond} overrides/s (${a.deliveriesPerSecond} deliveries/s); cpu ms workers/nats/hosts ${cpu(a.cpuMs)}`,
      `  baseline: p50 ${b.perHostMs.p50} ms, max ${b.perHostMs.max} ms, ${b.overridesPerSecond} overrides/s (bare publishes from one connection); cpu ms workers/nats/hosts ${cpu(b.cpuMs)}`,
      `  last override seen by one observer in its own process: arbiter ${r.lastPublished.arbiterMs} ms (${r.lastPublished.arbiterOverridesPerSecond} overrides/s, the first at ${r.lastPublished.arbiterFirstMs} ms), baseline ${r.lastPublished.baselineMs} ms (${r.lastPublished.baselineOverridesPerSecond} overrides/s)`,
      `  max arbiter/baseline x${r.ratioMax}; target max <= ${c.target.maxMs} ms and >= ${c.target.overridesPerSecond} overrides/s: ${a.perHostMs.max <= c.target.maxMs && a.overridesPerSecond >= c.target.overridesPerSecond ? "met" : "NOT met"}`,
      `  workers: ${Object.entries(r.workerStats)
        .map(
          ([id, s]) =>
            `${id} ${s["fanoutOverrides"] ?? 0} overrides, ${s["fanoutPartsDone"] ?? 0} parts${s["fanoutLastScanned"] === r.revision ? `, took the revision: ${s["fanoutLastScanMs"] ?? 0} ms` : ""}`,
        )
        .join("; ")}`,
      `  check: ${r.check.flippedWithNewOutcome} flipped entries hold the new outcome, ${r.check.othersUntouched} others untouched`,
      ...aloneLines(r.alone, c.target),
    ].join("\n");
  };
  return [
    "arbiter bench: revocation convergence, from the rules event's ack to each host's last cache update",
    ...c.runs.map(row),
  ].join("\n");
}

function aloneLines(a: AloneRun, target: ConvergenceReport["target"]): string[] {
  const cpu = (ms: AloneRun["arbiter"]["cpuMs"]) =>
    [ms.workers, ms.natsServer, ms.observer, ms.bench].map((v) => (v === null ? "?" : String(v))).join("/");
  const phase = (f: AloneRun["arbiter"]) =>
    `first ${f.firstMs} ms, last ${f.lastMs} ms, ${f.overridesPerSecond} overrides/s; cpu ms workers/nats/observer/bench ${cpu(f.cpuMs)}`;
  const met = a.arbiter.lastMs <= target.maxMs && a.arbiter.overridesPerSecond >= target.overridesPerSecond;
  return [
    `  Arbiter alone (no host listening, revision ${a.revision}, ${a.flipped} overrides checked by the observer):`,
    `    arbiter:  ${phase(a.arbiter)}`,
    `    baseline: ${phase(a.baseline)}`,
    `    overrides by worker: ${Object.entries(a.overridesByWorker)
      .map(([id, n]) => `${id} ${n}`)
      .join("; ")}; target: ${met ? "met" : "NOT met"}`,
  ];
}

function decisionsReport(r: DecisionsBenchReport): string {
  const header = [
    "",
    "requests",
    "decisions/s",
    "p50 ms",
    "p99 ms",
    "max ms",
    "errors",
    "mismatches",
    "id not echoed",
    "cpu% responder/nats/load",
    "cpu µs/req",
  ];
  const percent = (value: number | null) => (value === null ? "?" : value.toFixed(0));
  const row = (name: string, p: PhaseReport) => [
    name,
    String(p.requests),
    p.answersPerSecond.toFixed(0),
    p.latencyMs.p50.toFixed(2),
    p.latencyMs.p99.toFixed(2),
    p.latencyMs.max.toFixed(2),
    String(p.errors.total),
    String(p.mismatches),
    String(p.requestIdNotEchoed),
    [p.cpuPercent.responder, p.cpuPercent.natsServer, p.cpuPercent.loadGenerator].map(percent).join("/"),
    cpuPerRequest(p),
  ];
  const opa = r.opa;
  const rows = [
    header,
    row("echo", r.echo),
    row("worker", r.worker),
    row("worker signed", r.signedWorker),
    ...(opa.status === "measured"
      ? [row("opa x1", opa.single), row(`opa x${opa.queue.instances} queue`, opa.queue)]
      : []),
  ];
  const widths = header.map((_, i) => Math.max(...rows.map((cells) => cells[i]!.length)));
  const table = rows.map((cells) =>
    cells.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join("  "),
  );
  const s = r.settings;
  const log = r.worker.decisionLog;
  const m = r.machine;
  const phases =
    opa.status === "measured"
      ? [r.echo, r.worker, r.signedWorker, opa.single, opa.queue]
      : [r.echo, r.worker, r.signedWorker];
  const firstError = phases.find((p) => p.errors.sample !== null)?.errors.sample;
  const opaLines =
    opa.status === "measured"
      ? [
          `opa/echo: throughput x1 ${ratio(opa.single.answersPerSecond, r.echo.answersPerSecond)}, x${opa.queue.instances} queue ${ratio(opa.queue.answersPerSecond, r.echo.answersPerSecond)}; worker/opa x1 ${ratio(r.worker.answersPerSecond, opa.single.answersPerSecond)}`,
          opa.differsFromArbiter.length === 0
            ? "answers: the OPA server (seed's policy.rego) gave Arbiter's answer (example rules) to every payload"
            : `answers DIFFER from Arbiter's: ${opa.differsFromArbiter
                .map(
                  (d) =>
                    `${d.payload} (Arbiter permitted=${d.arbiterPermitted}; ${d.opaWrongAnswers} OPA answers otherwise, ${d.arbiterWrongAnswers} of Arbiter's)`,
                )
                .join(", ")}`,
          `opa server: ${opa.version} (${opa.bin})`,
        ]
      : [`opa: phases skipped (${opa.reason})`];
  return [
    `arbiter bench: 1 worker (decision log on) vs bare NATS echo${opa.status === "measured" ? " vs the OPA example's policy server" : ""}, ${s.concurrency} concurrent requesters, ${s.durationSeconds} s after ${s.warmupSeconds} s warm-up, ${s.payloads.length} real wasmCloud 1.x requests`,
    ...table,
    `worker/echo: throughput ${r.ratio.throughput.toFixed(3)} (target >= ${r.target.throughputRatio}: ${r.target.met ? "met" : "NOT met"}), p50 x${r.ratio.p50.toFixed(1)}, p99 x${r.ratio.p99.toFixed(1)}`,
    `signed requests (worker --request-signatures required, every request signed by the load generator): ${r.signedWorker.answersPerSecond.toFixed(0)}/s, ${r.ratio.signedThroughput.toFixed(3)} of unsigned decisions`,
    `decision log: ${log.recorded} decisions in ${log.stream} for ${log.answered} worker answers (${log.ok ? "ok" : "MISSING DECISIONS"})`,
    ...opaLines,
    ...(firstError ? [`first error: ${firstError}`] : []),
    "what each answer guarantees:",
    `  echo:   ${r.guarantees.echo}`,
    `  worker: ${r.guarantees.worker}`,
    `  signed: ${r.guarantees.signedWorker}`,
    `  opa:    ${r.guarantees.opa}`,
    ...(s.workerCpuProfDir
      ? [`worker CPU profile in ${s.workerCpuProfDir} (profiling slows the worker)`]
      : []),
    `machine: ${m.cpuModel}, ${m.cores} cores, ${m.platform}, node ${m.node}, nats-server ${m.natsServer}, load ${m.loadAverageBefore.join(" ")} -> ${m.loadAverageAfter.join(" ")}`,
    `date: ${r.date}`,
  ].join("\n");
}

/** CPU of responder + nats-server + load generator per answer, in µs (`?` when unknown). */
function cpuPerRequest(p: PhaseReport): string {
  const { responder, natsServer, loadGenerator } = p.cpuPercent;
  if (responder === null || natsServer === null || loadGenerator === null || p.answersPerSecond <= 0)
    return "?";
  const us = (percent: number) => ((percent / 100 / p.answersPerSecond) * 1e6).toFixed(1);
  return [responder, natsServer, loadGenerator].map(us).join("/");
}

function ratio(a: number, b: number): string {
  return b > 0 ? (a / b).toFixed(3) : "?";
}
