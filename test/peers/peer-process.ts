import { type ChildProcessByStdio, spawn } from "node:child_process";
import { basename } from "node:path";
import { createInterface } from "node:readline";
import type { Readable } from "node:stream";
import { until } from "../harness/index.js";

/** A peer program running as a child process, its output kept for assertions and failure messages. */
export interface PeerProcess extends AsyncDisposable {
  readonly pid: number;
  /** Every line written on stdout and stderr so far, in order. */
  readonly stdout: readonly string[];
  readonly stderr: readonly string[];
  /** The exit code (or signal name) once the process has ended, else `undefined`. */
  exit(): number | string | undefined;
  /** SIGTERM, then SIGKILL if it has not ended within `graceMs` (default 5000); resolves when it has ended. */
  stop(graceMs?: number): Promise<void>;
}

/** How {@link startPeer} starts a program and knows it is ready. */
export interface StartPeerOptions {
  readonly env?: NodeJS.ProcessEnv;
  /** The program is ready once a stdout line matches; `start` rejects if it ends first. */
  readonly ready: RegExp;
  /** Deadline for the ready line in milliseconds; default 20 000. */
  readonly timeout?: number;
}

/**
 * Starts `bin` with `args` and resolves once a stdout line matches `options.ready`. Rejects (with the
 * program's last output in the message) when it exits or misses the deadline first; the process is
 * then killed. Dispose or `stop()` the result to end it.
 */
export async function startPeer(
  bin: string,
  args: readonly string[],
  options: StartPeerOptions,
): Promise<PeerProcess> {
  const child: ChildProcessByStdio<null, Readable, Readable> = spawn(bin, args, {
    env: { ...process.env, ...options.env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const stdout: string[] = [];
  const stderr: string[] = [];
  createInterface({ input: child.stdout, crlfDelay: Number.POSITIVE_INFINITY }).on("line", (l) =>
    stdout.push(l),
  );
  createInterface({ input: child.stderr, crlfDelay: Number.POSITIVE_INFINITY }).on("line", (l) =>
    stderr.push(l),
  );
  let ended: number | string | undefined;
  let spawnError: Error | undefined;
  const closed = new Promise<void>((resolve) => {
    child.once("close", (code, signal) => {
      ended = code ?? signal ?? "unknown";
      resolve();
    });
  });
  child.once("error", (err) => {
    spawnError = err;
  });
  const name = basename(bin);
  const tail = () => [...stdout.slice(-10), ...stderr.slice(-20)].join("\n");

  const stop = async (graceMs = 5_000): Promise<void> => {
    if (ended !== undefined || spawnError) return;
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
    await closed;
    clearTimeout(timer);
  };

  try {
    await until(
      () => {
        if (spawnError) throw new Error(`${name} could not be started: ${spawnError.message}`);
        if (ended !== undefined) throw new Error(`${name} exited (${ended}) before it was ready:\n${tail()}`);
        return stdout.some((line) => options.ready.test(line));
      },
      { name: `${name} to print ${options.ready}`, timeout: options.timeout ?? 20_000, interval: 50 },
    );
  } catch (err) {
    await stop(0);
    throw new Error(`${err instanceof Error ? err.message : String(err)}\n${tail()}`, { cause: err });
  }

  return {
    pid: child.pid ?? -1,
    stdout,
    stderr,
    exit: () => ended,
    stop,
    [Symbol.asyncDispose]: () => stop(),
  };
}
