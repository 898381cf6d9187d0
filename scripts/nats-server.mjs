#!/usr/bin/env node
// Checks that a nats-server binary is available (installing it as root where apt-get exists):
//   node scripts/nats-server.mjs --check
// Run from the repository root after `npx tsc -b packages/embedded-nats`, whose output it imports.
import { execFile } from "node:child_process";
import { promisify } from "node:util";

const USAGE = "usage: node scripts/nats-server.mjs --check";

async function loadPackage() {
  try {
    return await import("../packages/embedded-nats/dist/index.js");
  } catch (err) {
    if (err?.code !== "ERR_MODULE_NOT_FOUND") throw err;
    throw new Error(
      "packages/embedded-nats is not built yet; run `npx tsc -b packages/embedded-nats` first.",
      {
        cause: err,
      },
    );
  }
}

async function check() {
  const { findNatsServer } = await loadPackage();
  const path = await findNatsServer({ log: (line) => process.stderr.write(`${line}\n`) });
  const { stdout } = await promisify(execFile)(path, ["--version"]);
  // `nats-server --version` prints "nats-server: v2.9.10".
  const version = stdout.trim().replace(/^nats-server:\s*/, "");
  console.log(`nats-server: ${path} (${version})`);
}

const args = process.argv.slice(2);
if (args.length !== 1 || args[0] !== "--check") {
  console.error(USAGE);
  process.exit(2);
}
try {
  await check();
} catch (err) {
  console.error(err instanceof Error ? err.message : String(err));
  process.exit(1);
}
