import { accessSync, constants, readdirSync, statSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";

/** How to put one kind of peer into the cache, as {@link PeerMissingError} messages say. */
export function buildHint(kind: "nats" | "opa" | "host"): string {
  return `run \`npm run peers -- --only ${kind}\` (or \`npm run peers\` for every peer)`;
}

/** A peer program the suite needs is not in the cache; the message says how to build it. */
export class PeerMissingError extends Error {
  readonly code = "PEER_MISSING" as const;

  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "PeerMissingError";
  }
}

/** The peers cache: `env.ARBITER_PEERS_DIR`, default `~/.cache/arbiter-peers` (as scripts/peers.mjs). */
export function peersDir(env: NodeJS.ProcessEnv = process.env): string {
  return env["ARBITER_PEERS_DIR"] || join(homedir(), ".cache", "arbiter-peers");
}

/** One nats-server release installed in the cache. */
export interface CachedNatsServer {
  /** As the module proxy names it, e.g. `v2.11.17`. */
  readonly version: string;
  readonly bin: string;
}

function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

function compareVersions(a: string, b: string): number {
  const pa = a.slice(1).split(".").map(Number);
  const pb = b.slice(1).split(".").map(Number);
  for (let i = 0; i < 3; i++) {
    const diff = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (diff !== 0) return diff;
  }
  return 0;
}

/** Every nats-server in the cache, oldest first; empty when there is none (never throws). */
export function cachedNatsServers(): CachedNatsServer[] {
  const root = join(peersDir(), "nats-server");
  let versions: string[];
  try {
    versions = readdirSync(root).filter((name) => /^v\d+\.\d+\.\d+$/.test(name));
  } catch {
    return [];
  }
  return versions
    .sort(compareVersions)
    .map((version) => ({ version, bin: join(root, version, "nats-server") }))
    .filter((server) => isExecutable(server.bin));
}

/** The OPA policy server built from peers/opa-policy-server; throws {@link PeerMissingError} when absent. */
export function opaPolicyServerBin(): string {
  const bin = join(peersDir(), "opa-policy-server", "opa-policy-server");
  if (!isExecutable(bin)) {
    throw new PeerMissingError(`the OPA policy server is not in ${bin}: ${buildHint("opa")}`);
  }
  return bin;
}

/** The wasmCloud host built from peers/wasmcloud-host, with its crate version; throws {@link PeerMissingError} when absent. */
export function wasmcloudHostBin(): { readonly bin: string; readonly crateVersion: string } {
  const root = join(peersDir(), "wasmcloud-host");
  let found: { bin: string; crateVersion: string } | undefined;
  try {
    for (const crateVersion of readdirSync(root).sort(compareVersions)) {
      const bin = join(root, crateVersion, "arbiter-wasmcloud-host");
      if (isExecutable(bin)) found = { bin, crateVersion };
    }
  } catch {
    // No folder: reported below like an empty one.
  }
  if (!found) throw new PeerMissingError(`no wasmCloud host in ${root}: ${buildHint("host")}`);
  return found;
}
