import { existsSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import { isProcessAlive } from "@arbiter/embedded-nats";
import { ArbiterError, ErrorCode } from "@arbiter/protocol";

/** Where `arbiter up` records the pids of its nats-server processes, one per line. */
export function natsPidFile(home: string): string {
  return join(home, "nats-server.pid");
}

/** Records the pids of the nats-server processes `arbiter up` started for `home`. */
export function recordNatsPids(home: string, pids: readonly number[]): void {
  writeFileSync(natsPidFile(home), `${pids.join("\n")}\n`);
}

/** Removes the pid file (after the servers have stopped). */
export function clearNatsPids(home: string): void {
  rmSync(natsPidFile(home), { force: true });
}

const STOP_DEADLINE_MS = 10_000;

/**
 * Stops the nats-server processes a previous `arbiter up` of `home` left running (it was killed
 * with SIGKILL, so it could not stop them), as named by its pid file, and returns their pids. A pid
 * that is gone, or is no nats-server at all, is skipped. Throws INVALID_CONFIG naming the pid when a
 * nats-server there cannot be identified as serving `home` (its store directory is elsewhere).
 */
export async function stopLeftoverNats(home: string): Promise<number[]> {
  const file = natsPidFile(home);
  if (!existsSync(file)) return [];
  const pids = readFileSync(file, "utf8")
    .split("\n")
    .map((line) => Number(line.trim()))
    .filter((pid) => Number.isSafeInteger(pid) && pid > 0);
  const stopped: number[] = [];
  for (const pid of pids) {
    const command = isProcessAlive(pid) ? commandLine(pid) : null;
    if (command === null || !command.some((arg, i) => i === 0 && basename(arg).startsWith("nats-server")))
      continue;
    if (!servesHome(pid, command, home)) {
      throw new ArbiterError(
        ErrorCode.InvalidConfig,
        `${file} names pid ${pid}, a nats-server whose data is not under ${home}; stop it yourself (kill ${pid}) or remove ${file}`,
      );
    }
    await terminate(pid);
    removeWorkDir(command);
    stopped.push(pid);
  }
  clearNatsPids(home);
  return stopped;
}

/**
 * Removes the temporary folder the stopped server was started in (its config and ports file, made
 * by embedded-nats as `arbiter-nats-*` in the system's temporary folder), which the killed `up`
 * could not remove; a config anywhere else is left alone.
 */
function removeWorkDir(command: readonly string[]): void {
  const config = command.includes("-c") ? command[command.indexOf("-c") + 1] : undefined;
  if (config === undefined) return;
  const dir = dirname(config);
  if (dirname(dir) === tmpdir() && basename(dir).startsWith("arbiter-nats-")) {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The process's argv from /proc, or null when it does not exist (or /proc is not there). */
function commandLine(pid: number): string[] | null {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8")
      .split("\0")
      .filter((arg) => arg.length > 0);
  } catch {
    return null;
  }
}

/**
 * True when the server keeps its JetStream data under `home`: its config file (`-c`) names a
 * store directory there, or it holds a file there open.
 */
function servesHome(pid: number, command: readonly string[], home: string): boolean {
  const config = command[command.indexOf("-c") + 1];
  if (command.includes("-c") && config !== undefined) {
    try {
      // renderServerConfig writes `store_dir: "<path>"` as a JSON string.
      if (readFileSync(config, "utf8").includes(`store_dir: ${JSON.stringify(home).slice(0, -1)}/`))
        return true;
    } catch {
      // The config is in a temporary folder that may be gone; the open files still tell.
    }
  }
  try {
    return readdirSync(`/proc/${pid}/fd`).some((fd) => {
      try {
        return readlinkSync(`/proc/${pid}/fd/${fd}`).startsWith(`${home}/`);
      } catch {
        return false;
      }
    });
  } catch {
    return false;
  }
}

/** SIGTERM, then SIGKILL if it is still there at the deadline; resolves once the pid is gone. */
async function terminate(pid: number): Promise<void> {
  process.kill(pid, "SIGTERM");
  const deadline = Date.now() + STOP_DEADLINE_MS;
  while (isProcessAlive(pid) && Date.now() < deadline) await delay(50);
  if (isProcessAlive(pid)) process.kill(pid, "SIGKILL");
  while (isProcessAlive(pid)) await delay(50);
}
