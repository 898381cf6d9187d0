import { writeFileSync } from "node:fs";
import { resolve } from "node:path";
import { ArbiterError, ErrorCode } from "@arbiter/protocol";
import { Command } from "commander";
import {
  type DecisionsBenchReport,
  isBenchInterruptedError,
  type PhaseReport,
  runDecisionsBench,
} from "../bench/decisions-bench.js";
import { parseIntegerFlag } from "../flags.js";
import { createLogger } from "../lifecycle.js";
import { emit, reportError } from "../output.js";

interface BenchFlags {
  duration: string;
  warmup: string;
  concurrency: string;
  timeout: string;
  workerCpuProf?: string;
  out?: string;
  json?: boolean;
}

/** `arbiter bench`: decisions/s and latency of one worker beside a bare NATS echo responder. */
export function benchCommand(): Command {
  return new Command("bench")
    .description(
      "benchmark one decision worker (decision log on) against a bare NATS echo responder, same embedded nats-server, same run",
    )
    .option("--duration <s>", "measured seconds per responder", "10")
    .option("--warmup <s>", "unmeasured seconds of load before each measurement", "2")
    .option("--concurrency <n>", "concurrent requesters (each waits for its answer)", "64")
    .option("--timeout <ms>", "per-request timeout; a late answer counts as an error", "1000")
    .option("--worker-cpu-prof <dir>", "run the worker under node --cpu-prof, writing its profile into <dir>")
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
      try {
        const report = await runDecisionsBench({
          concurrency: parseIntegerFlag(flags.concurrency, "--concurrency", { min: 1 }),
          warmupMs: seconds(flags.warmup, "--warmup", true),
          durationMs: seconds(flags.duration, "--duration", false),
          timeoutMs: parseIntegerFlag(flags.timeout, "--timeout", { min: 1 }),
          ...(flags.workerCpuProf ? { workerCpuProfDir: resolve(flags.workerCpuProf) } : {}),
          signal: controller.signal,
          log: createLogger("arbiter-bench"),
        });
        if (flags.out) writeFileSync(flags.out, `${JSON.stringify(report, null, 2)}\n`);
        emit(json, report, () => humanReport(report));
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

function humanReport(r: DecisionsBenchReport): string {
  const header = [
    "",
    "requests",
    "decisions/s",
    "p50 ms",
    "p99 ms",
    "max ms",
    "errors",
    "mismatches",
    "cpu% responder/nats/load",
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
    [p.cpuPercent.responder, p.cpuPercent.natsServer, p.cpuPercent.loadGenerator].map(percent).join("/"),
  ];
  const rows = [header, row("echo", r.echo), row("worker", r.worker)];
  const widths = header.map((_, i) => Math.max(...rows.map((cells) => cells[i]!.length)));
  const table = rows.map((cells) =>
    cells.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join("  "),
  );
  const s = r.settings;
  const log = r.worker.decisionLog;
  const m = r.machine;
  const firstError = [r.echo, r.worker].find((p) => p.errors.sample !== null)?.errors.sample;
  return [
    `arbiter bench: 1 worker (decision log on) vs bare NATS echo, ${s.concurrency} concurrent requesters, ${s.durationSeconds} s after ${s.warmupSeconds} s warm-up, ${s.payloads.length} real wasmCloud 1.x requests`,
    ...table,
    `worker/echo: throughput ${r.ratio.throughput.toFixed(3)} (target >= ${r.target.throughputRatio}: ${r.target.met ? "met" : "NOT met"}), p50 x${r.ratio.p50.toFixed(1)}, p99 x${r.ratio.p99.toFixed(1)}`,
    `decision log: ${log.recorded} decisions in ${log.stream} for ${log.answered} worker answers (${log.ok ? "ok" : "MISSING DECISIONS"})`,
    ...(firstError ? [`first error: ${firstError}`] : []),
    ...(s.workerCpuProfDir
      ? [`worker CPU profile in ${s.workerCpuProfDir} (profiling slows the worker)`]
      : []),
    `machine: ${m.cpuModel}, ${m.cores} cores, ${m.platform}, node ${m.node}, nats-server ${m.natsServer}, load ${m.loadAverageBefore.join(" ")} -> ${m.loadAverageAfter.join(" ")}`,
    `date: ${r.date}`,
  ].join("\n");
}
