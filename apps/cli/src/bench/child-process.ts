import { spawn } from "node:child_process";

/** How a child process ended. */
export interface ChildExit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

/** A Node process the benchmark started; killed by pid when the benchmark exits, whatever happens. */
export interface BenchChild {
  readonly name: string;
  readonly pid: number;
  /** Resolves when the process has exited (never rejects). */
  readonly exited: Promise<ChildExit>;
  /** Set once the process has exited. */
  readonly exit: ChildExit | null;
  /** The last lines the process wrote on stderr, for error messages. */
  stderrTail(): string;
  /** Sends `signal` (default SIGTERM), SIGKILL after `graceMs`, and waits for the exit. Idempotent. */
  stop(signal?: NodeJS.Signals, graceMs?: number): Promise<ChildExit>;
}

const STDERR_TAIL_LINES = 30;
const live = new Set<number>();
let exitHookInstalled = false;

/** SIGKILLs every child still running; for the last moment before this process exits. */
export function killLiveChildren(): void {
  for (const pid of live) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // Already gone.
    }
  }
  live.clear();
}

/**
 * Starts `node <args>` with stdout ignored and stderr kept (its tail) for error messages. The pid
 * is remembered so that an exit of this process, even through an uncaught exception, kills it.
 */
export function spawnNode(name: string, args: readonly string[], env: NodeJS.ProcessEnv): BenchChild {
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.on("exit", killLiveChildren);
  }
  const child = spawn(process.execPath, args, { env, stdio: ["ignore", "ignore", "pipe"] });
  const pid = child.pid;
  if (pid === undefined) throw new Error(`could not start the ${name} process (node ${args.join(" ")})`);
  live.add(pid);
  const tail: string[] = [];
  child.stderr?.setEncoding("utf8").on("data", (chunk: string) => {
    tail.push(...chunk.split("\n").filter((line) => line.length > 0));
    if (tail.length > STDERR_TAIL_LINES) tail.splice(0, tail.length - STDERR_TAIL_LINES);
  });
  let exit: ChildExit | null = null;
  const exited = new Promise<ChildExit>((resolve) => {
    child.once("exit", (code, signal) => {
      live.delete(pid);
      exit = { code, signal };
      resolve(exit);
    });
    child.once("error", () => {
      live.delete(pid);
      exit ??= { code: null, signal: null };
      resolve(exit);
    });
  });

  return {
    name,
    pid,
    exited,
    get exit() {
      return exit;
    },
    stderrTail: () => tail.join("\n"),
    async stop(signal = "SIGTERM", graceMs = 10_000) {
      if (exit) return exit;
      try {
        process.kill(pid, signal);
      } catch {
        // Exited meanwhile.
      }
      const timer = setTimeout(() => {
        try {
          process.kill(pid, "SIGKILL");
        } catch {
          // Exited meanwhile.
        }
      }, graceMs);
      const result = await exited;
      clearTimeout(timer);
      return result;
    },
  };
}
