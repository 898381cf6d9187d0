import { spawn } from "node:child_process";
import { constants } from "node:fs";
import { access, stat } from "node:fs/promises";
import { delimiter, join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { NATS_SERVER_INSTALL_HINT, NatsServerNotFoundError } from "./errors.js";

/** How {@link findNatsServer} may go about getting a binary. */
export interface FindNatsServerOptions {
  /** Install with `apt-get` when running as root and nothing is found; default true, `false` never installs. */
  install?: boolean;
  /** Receives `apt-get` output line by line; without it that output goes to stderr. */
  log?: (line: string) => void;
}

/** Where Debian's package and the release tarball's install instructions put the binary. */
export const NATS_SERVER_FALLBACK_LOCATIONS: readonly string[] = [
  "/usr/sbin/nats-server",
  "/usr/local/bin/nats-server",
];

const NOT_FOUND_MESSAGE = `nats-server was not found on PATH or in NATS_SERVER_BIN. ${NATS_SERVER_INSTALL_HINT}`;

/** Successful look-ups, keyed by the value of NATS_SERVER_BIN at the time (so changing it is honoured). */
const lookups = new Map<string, Promise<string>>();

/**
 * Resolves to the absolute path of a `nats-server` binary: `NATS_SERVER_BIN` first, then PATH, then
 * {@link NATS_SERVER_FALLBACK_LOCATIONS}; as root with `apt-get` available (and `install !== false`)
 * it installs the Debian package and looks again. Cached per process. Rejects with
 * {@link NatsServerNotFoundError} when NATS_SERVER_BIN is not executable or nothing can be found.
 */
export function findNatsServer(options: FindNatsServerOptions = {}): Promise<string> {
  const key = process.env["NATS_SERVER_BIN"] ?? "";
  let lookup = lookups.get(key);
  if (!lookup) {
    lookup = locateOrInstallNatsServer(options);
    lookups.set(key, lookup);
    // Failures are not cached: the next call may find a binary installed in the meantime.
    lookup.catch(() => lookups.delete(key));
  }
  return lookup;
}

/**
 * {@link findNatsServer} without the cache, with the environment and fallback locations as
 * parameters so tests can run it against a fake `apt-get`.
 */
export async function locateOrInstallNatsServer(
  options: FindNatsServerOptions,
  env: NodeJS.ProcessEnv = process.env,
  fallbacks: readonly string[] = NATS_SERVER_FALLBACK_LOCATIONS,
): Promise<string> {
  const found = await locateNatsServer(env, fallbacks);
  if (found) return found;
  if (options.install === false || process.getuid?.() !== 0) {
    throw new NatsServerNotFoundError(NOT_FOUND_MESSAGE);
  }
  const aptGet = await findExecutable("apt-get", env["PATH"], ["/usr/bin/apt-get"]);
  if (!aptGet) throw new NatsServerNotFoundError(NOT_FOUND_MESSAGE);
  try {
    await run(aptGet, ["update"], env, options.log);
    await run(aptGet, ["install", "-y", "nats-server"], env, options.log);
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err);
    throw new NatsServerNotFoundError(
      `nats-server was not found on PATH or in NATS_SERVER_BIN, and installing it failed (${reason}). ${NATS_SERVER_INSTALL_HINT}`,
      { cause: err },
    );
  }
  const installed = await locateNatsServer(env, fallbacks);
  if (installed) return installed;
  throw new NatsServerNotFoundError(NOT_FOUND_MESSAGE);
}

/**
 * Looks for `nats-server` without installing or caching: `env.NATS_SERVER_BIN` (rejects with
 * {@link NatsServerNotFoundError} when set but not an executable file), then `env.PATH`, then
 * `fallbacks`. Resolves to `undefined` when there is none.
 */
export async function locateNatsServer(
  env: NodeJS.ProcessEnv,
  fallbacks: readonly string[] = NATS_SERVER_FALLBACK_LOCATIONS,
): Promise<string | undefined> {
  const fromEnv = env["NATS_SERVER_BIN"];
  if (fromEnv) {
    const path = resolve(fromEnv);
    if (await isExecutableFile(path)) return path;
    throw new NatsServerNotFoundError(
      `NATS_SERVER_BIN is set to "${fromEnv}", which is not an executable file. ${NATS_SERVER_INSTALL_HINT}`,
    );
  }
  return findExecutable("nats-server", env["PATH"], fallbacks);
}

async function findExecutable(
  name: string,
  searchPath: string | undefined,
  fallbacks: readonly string[],
): Promise<string | undefined> {
  // Empty PATH entries mean the current directory to a shell; a test binary there is never wanted.
  const dirs = (searchPath ?? "").split(delimiter).filter((dir) => dir !== "");
  for (const candidate of [...dirs.map((dir) => resolve(join(dir, name))), ...fallbacks]) {
    if (await isExecutableFile(candidate)) return candidate;
  }
  return undefined;
}

async function isExecutableFile(path: string): Promise<boolean> {
  try {
    await access(path, constants.X_OK);
    return (await stat(path)).isFile();
  } catch {
    return false;
  }
}

/** Runs a command to completion, its output going to `log` line by line or else to our stderr. */
function run(
  command: string,
  args: readonly string[],
  env: NodeJS.ProcessEnv,
  log: ((line: string) => void) | undefined,
): Promise<void> {
  return new Promise((resolveRun, reject) => {
    const child = spawn(command, args, {
      env: { ...env, DEBIAN_FRONTEND: "noninteractive" },
      // Without a log, both streams go to our fd 2 so stdout stays clean for the caller's output.
      stdio: log ? ["ignore", "pipe", "pipe"] : ["ignore", 2, 2],
    });
    if (log) {
      for (const stream of [child.stdout, child.stderr]) {
        if (stream) createInterface({ input: stream, crlfDelay: Number.POSITIVE_INFINITY }).on("line", log);
      }
    }
    child.once("error", reject);
    child.once("close", (code, signal) => {
      if (code === 0) resolveRun();
      else reject(new Error(`\`${command} ${args.join(" ")}\` exited with ${signal ?? `code ${code}`}`));
    });
  });
}
