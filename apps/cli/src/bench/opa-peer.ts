import { execFileSync } from "node:child_process";
import { accessSync, constants, statSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";

/** The command that puts the OPA example's policy server into the peers cache. */
export const OPA_BUILD_HINT = "npm run peers -- --only opa";

/**
 * Where scripts/peers.mjs puts the OPA policy server built from `peers/opa-policy-server`:
 * `$ARBITER_PEERS_DIR/opa-policy-server/opa-policy-server`, default under `~/.cache/arbiter-peers`.
 */
export function opaPolicyServerPath(env: NodeJS.ProcessEnv = process.env): string {
  const root = env["ARBITER_PEERS_DIR"] || join(homedir(), ".cache", "arbiter-peers");
  return join(root, "opa-policy-server", "opa-policy-server");
}

/** True when `path` is an executable file. Never throws. */
export function isExecutableFile(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

/** What the binary says with `-version` (OPA, nats.go and Go versions), or `unknown`. Never throws. */
export function opaPolicyServerVersion(bin: string): string {
  try {
    return execFileSync(bin, ["-version"], { encoding: "utf8", timeout: 10_000 }).trim();
  } catch {
    return "unknown";
  }
}
