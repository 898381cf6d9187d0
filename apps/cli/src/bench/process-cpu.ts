import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";

/** CPU time of some processes at one moment (Linux `/proc/<pid>/stat`; empty elsewhere). */
export interface CpuSample {
  readonly atMs: number;
  /** user + system seconds per pid; a pid that could not be read is missing. */
  readonly seconds: ReadonlyMap<number, number>;
}

let clockTicks: number | undefined;

/** Kernel clock ticks per second (`getconf CLK_TCK`; 100 when that cannot be asked). */
function ticksPerSecond(): number {
  if (clockTicks === undefined) {
    try {
      clockTicks = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
    } catch {
      clockTicks = 100;
    }
  }
  return clockTicks;
}

/** Reads the CPU time used so far by each pid. Never throws. */
export function sampleCpu(pids: readonly number[]): CpuSample {
  const seconds = new Map<number, number>();
  for (const pid of pids) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      // Fields after the parenthesised command name (which may contain spaces): state is the
      // first, utime and stime are fields 14 and 15 of the whole line (proc(5)).
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      seconds.set(pid, (Number(fields[11]) + Number(fields[12])) / ticksPerSecond());
    } catch {
      // Not Linux, or the process is gone.
    }
  }
  return { atMs: Number(process.hrtime.bigint()) / 1e6, seconds };
}

/** Percent of one core each pid used between two samples (100 = one core busy); null if unknown. */
export function cpuPercent(from: CpuSample, to: CpuSample, pid: number): number | null {
  const a = from.seconds.get(pid);
  const b = to.seconds.get(pid);
  const wallSeconds = (to.atMs - from.atMs) / 1000;
  if (a === undefined || b === undefined || wallSeconds <= 0) return null;
  return Math.round(((b - a) / wallSeconds) * 1000) / 10;
}

/** Milliseconds of CPU the pids used together between two samples; null if any is unknown. */
export function cpuMsUsed(from: CpuSample, to: CpuSample, pids: readonly number[]): number | null {
  let sum = 0;
  for (const pid of pids) {
    const a = from.seconds.get(pid);
    const b = to.seconds.get(pid);
    if (a === undefined || b === undefined) return null;
    sum += b - a;
  }
  return Math.round(sum * 1000);
}
