import { spawn } from "node:child_process";

/** How a child process ended. */
export interface ChildExit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

/** A process the benchmark started; killed by pid when the benchmark exits, whatever happens. */
export interface BenchChild {
  readonly name: string;
  readonly pid: number;
  /** Resolves when the process has exited (never rejects). */
  readonly exited: Promise<ChildExit>;
  /** Set once the process has exited. */
  readonly exit: ChildExit | null;
  /** The last lines the process wrote on stderr, for error messages. */
  stderrTail(): string;
  /** Resolves once the process has printed `line` on stdout; rejects when it exits first. */
  printed(line: string): Promise<void>;
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

/** Starts `node <args>`; see {@link spawnChild}. */
export function spawnNode(name: string, args: readonly string[], env: NodeJS.ProcessEnv): BenchChild {
  return spawnChild(name, process.execPath, args, env);
}

/**
 * Starts `command <args>` with its stdout lines and stderr tail kept for {@link BenchChild.printed}
 * and error messages. The pid is remembered so that an exit of this process, even through an
 * uncaught exception, kills it.
 */
export function spawnChild(
  name: string,
  command: string,
  args: readonly string[],
  env: NodeJS.ProcessEnv,
): BenchChild {
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.on("exit", killLiveChildren);
  }
  const child = spawn(command, args, { env, stdio: ["ignore", "pipe", "pipe"] });
  const pid = child.pid;
  if (pid === undefined)
    throw new Error(`could not start the ${name} process (${command} ${args.join(" ")})`);
  live.add(pid);
  const tail: string[] = [];
  child.stderr?.setEncoding("utf8").on("data", (chunk: string) => {
    tail.push(...chunk.split("\n").filter((line) => line.length > 0));
    if (tail.length > STDERR_TAIL_LINES) tail.splice(0, tail.length - STDERR_TAIL_LINES);
  });
  const lines = new Set<string>();
  const waiting: Array<{ line: string; resolve: () => void }> = [];
  let partial = "";
  child.stdout?.setEncoding("utf8").on("data", (chunk: string) => {
    const parts = (partial + chunk).split("\n");
    partial = parts.pop() ?? "";
    for (const line of parts) {
      lines.add(line.trim());
      for (const w of waiting.filter((w) => w.line === line.trim())) w.resolve();
    }
    if (lines.size > STDERR_TAIL_LINES) lines.clear();
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
    printed: (line) =>
      lines.has(line)
        ? Promise.resolve()
        : new Promise<void>((resolve, reject) => {
            waiting.push({ line, resolve });
            void exited.then((e) =>
              reject(
                new Error(
                  `the ${name} (pid ${pid}) exited (code ${e.code}, signal ${e.signal}) before printing ${JSON.stringify(line)}:\n${tail.join("\n")}`,
                ),
              ),
            );
          }),
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

/** The `node` arguments that write a CPU profile of the process as `<dir>/<name>`; none without a folder. */
export function cpuProfArgs(dir: string | undefined, name: string): string[] {
  return dir ? ["--cpu-prof", "--cpu-prof-dir", dir, "--cpu-prof-name", name] : [];
}
