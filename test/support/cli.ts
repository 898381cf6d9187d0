import { type ChildProcess, spawn } from "node:child_process";
import { fileURLToPath } from "node:url";

const CLI = fileURLToPath(new URL("../../apps/cli/dist/main.js", import.meta.url));

/** What a finished `arbiter` invocation printed and how it exited. */
export interface CliResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs the built `arbiter` command to completion with extra environment variables. */
export function runArbiter(
  args: string[],
  env: Record<string, string> = {},
  stdin?: string,
): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, ...env }, stdio: "pipe" });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk: Buffer) => {
      stdout += chunk.toString();
    });
    child.stderr.on("data", (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(stdin ?? "");
  });
}

/** A long-running `arbiter` process (worker, up, tail) whose output is collected as it comes. */
export interface RunningArbiter extends AsyncDisposable {
  readonly child: ChildProcess;
  stdout(): string;
  stderr(): string;
  /**
   * Sends a signal and resolves with the exit code once the process has gone; one still there
   * after `killAfterMs` (10 s unless told) is killed, so a hung drain cannot hang the test run.
   */
  stop(signal?: NodeJS.Signals, killAfterMs?: number): Promise<number | null>;
}

/** Starts `arbiter` in the background; dispose (or `stop`) ends it by pid. */
export function spawnArbiter(args: string[], env: Record<string, string> = {}): RunningArbiter {
  const child = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, ...env }, stdio: "pipe" });
  let out = "";
  let err = "";
  child.stdout?.on("data", (chunk: Buffer) => {
    out += chunk.toString();
  });
  child.stderr?.on("data", (chunk: Buffer) => {
    err += chunk.toString();
  });
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  const stop = async (signal: NodeJS.Signals = "SIGTERM", killAfterMs = 10_000) => {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    const killer = setTimeout(() => child.kill("SIGKILL"), killAfterMs);
    try {
      return await exited;
    } finally {
      clearTimeout(killer);
    }
  };
  return {
    child,
    stdout: () => out,
    stderr: () => err,
    stop,
    [Symbol.asyncDispose]: async () => void (await stop()),
  };
}
