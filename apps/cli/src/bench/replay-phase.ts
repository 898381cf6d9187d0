import type { Command } from "commander";
import { replayThreads } from "../commands/audit-replay.js";
import { parseIntegerFlag } from "../flags.js";
import { createLogger } from "../lifecycle.js";
import { BenchInterruptedError } from "./decisions-bench.js";
import { type ReplayBenchReport, runReplayBench } from "./replay-bench.js";

/** The flags of `arbiter bench` for its replay phase. */
export interface ReplayBenchFlags {
  replayDecisions: string;
  replayRevisions: string;
  replayOnly?: boolean;
  replayThreads?: string;
}

/** Adds the replay phase's flags to `arbiter bench`. */
export function addReplayBenchOptions(command: Command): Command {
  return command
    .option("--replay-decisions <n>", "decisions written for the replay phase (0 skips it)", "1000000")
    .option("--replay-revisions <n>", "rules revisions the replay phase's decisions are spread over", "50")
    .option(
      "--replay-threads <n>",
      "worker threads replay uses, as audit replay --threads (default: one per core beyond two, after 20000 records)",
    )
    .option(
      "--replay-only",
      "run only the replay phase (audit replay beside a bare read of the same stream)",
    );
}

/** The replay phase as the flags ask for it: whether it runs alone, running it, and its human lines. */
export function replayPhase(
  flags: ReplayBenchFlags,
  signal: AbortSignal,
): {
  readonly only: boolean;
  run(): Promise<ReplayBenchReport | { readonly skipped: string }>;
  human(report: ReplayBenchReport | { readonly skipped: string }): string;
} {
  const decisions = parseIntegerFlag(flags.replayDecisions, "--replay-decisions", { min: 0 });
  const revisions = parseIntegerFlag(flags.replayRevisions, "--replay-revisions", { min: 1 });
  const threads = replayThreads(flags.replayThreads);
  return {
    only: flags.replayOnly === true,
    async run() {
      if (decisions === 0) return { skipped: "--replay-decisions 0" };
      try {
        return await runReplayBench({
          decisions,
          revisions,
          threads,
          signal,
          log: createLogger("arbiter-bench"),
        });
      } catch (err) {
        if (signal.aborted) throw new BenchInterruptedError();
        throw err;
      }
    },
    human(report) {
      if ("skipped" in report) return `replay: skipped (${report.skipped})`;
      const rate = (n: number) => n.toLocaleString("en-US");
      const t = report.target;
      return [
        `replay: ${rate(report.settings.decisions)} decisions across ${report.settings.revisions} revisions (written in ${report.write.seconds.toFixed(1)} s, ${rate(report.write.messages)} sealed batches signed by an enrolled worker key)`,
        `  bare read:    ${rate(report.bareRead.decisionsPerSecond)} decisions/s (${report.bareRead.seconds.toFixed(2)} s, ${report.bareRead.cpuMicrosPerDecision} µs CPU each)`,
        `  audit replay (${report.settings.threads.count} worker threads): ${rate(report.replay.decisionsPerSecond)} decisions/s (${report.replay.seconds.toFixed(2)} s, ${report.replay.cpuMicrosPerDecision} µs CPU each), ${report.replay.mismatches} mismatches, ${report.replay.revisionsFolded} rule events folded`,
        `  replay/bare read: ${report.ratio.toFixed(3)} (target >= ${t.ratio} and >= ${rate(t.decisionsPerSecond)}/s: ${t.met ? "met" : "NOT met"})`,
      ].join("\n");
    },
  };
}
