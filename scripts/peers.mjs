#!/usr/bin/env node
// Builds or installs the real third-party programs of the interoperability suite (`npm run test:peers`)
// into a cache folder, reusing what is already there:
//   nats-server/<version>/nats-server                    `go install` of the newest 2.10.x, 2.11.x, 2.12.x and newest release
//   opa-policy-server/opa-policy-server                  peers/opa-policy-server (Go: OPA's rego + nats.go)
//   wasmcloud-host/<crate version>/arbiter-wasmcloud-host  peers/wasmcloud-host (Rust: crates.io wasmcloud-host)
// The cache is ARBITER_PEERS_DIR, default ~/.cache/arbiter-peers. Every build runs under `nice -n 19`
// with one job (go -p=1, cargo -j 1): the machine is small and shared.
//
// Usage: node scripts/peers.mjs [--only nats|opa|host[,…]] [--force]
//        node scripts/peers.mjs --check   exits 0 when every peer is in the cache, 1 (saying what is missing)
//                                         otherwise; builds nothing and needs no network
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { constants } from "node:fs";
import { access, copyFile, mkdir, readdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { homedir } from "node:os";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const PEERS_DIR = peersDir(process.env);
const KINDS = ["nats", "opa", "host"];
const NATS_MODULE = "github.com/nats-io/nats-server/v2";
/** The release lines operators run; the newest release overall is added to these. */
const NATS_LINES = ["2.10", "2.11", "2.12"];
const HOST_BINARY = "arbiter-wasmcloud-host";

/** The cache folder: `env.ARBITER_PEERS_DIR`, default `~/.cache/arbiter-peers`. */
function peersDir(env) {
  return env["ARBITER_PEERS_DIR"] || join(homedir(), ".cache", "arbiter-peers");
}

/** Where cargo keeps its downloads: `env.CARGO_HOME`, default `~/.cargo`. */
function cargoHome(env) {
  return env["CARGO_HOME"] || join(homedir(), ".cargo");
}

function usage(message) {
  if (message) console.error(message);
  console.error("usage: node scripts/peers.mjs [--only nats|opa|host[,…]] [--force] | --check");
  process.exit(2);
}

function parseArgs(argv) {
  let only = KINDS;
  let force = false;
  let check = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === "--only") {
      const value = argv[++i];
      if (!value) usage("--only needs a value");
      only = value.split(",").map((kind) => kind.trim());
      for (const kind of only) if (!KINDS.includes(kind)) usage(`--only: unknown kind "${kind}"`);
    } else if (arg === "--force") {
      force = true;
    } else if (arg === "--check") {
      check = true;
    } else if (arg === "--help" || arg === "-h") {
      usage();
    } else {
      usage(`unknown argument ${arg}`);
    }
  }
  return { only, force, check };
}

/** Runs a command under `nice -n 19`, its output streamed to ours; rejects on a non-zero exit. */
function niced(command, args, options = {}) {
  return run("nice", ["-n", "19", command, ...args], options);
}

function run(command, args, { cwd = ROOT, env = {}, capture = false } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      cwd,
      env: { ...process.env, ...env },
      stdio: capture ? ["ignore", "pipe", "pipe"] : ["ignore", "inherit", "inherit"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout?.on("data", (chunk) => {
      stdout += chunk;
    });
    child.stderr?.on("data", (chunk) => {
      stderr += chunk;
    });
    child.once("error", (err) => reject(new Error(`cannot run ${command}: ${err.message}`)));
    child.once("close", (code, signal) => {
      if (code === 0) resolve(stdout.trim());
      else {
        const detail = stderr.trim() ? `: ${stderr.trim().split("\n").slice(-5).join(" | ")}` : "";
        reject(
          new Error(`\`${command} ${args.join(" ")}\` exited with ${signal ?? `code ${code}`}${detail}`),
        );
      }
    });
  });
}

async function isExecutable(path) {
  try {
    await access(path, constants.X_OK);
    return (await stat(path)).isFile();
  } catch {
    return false;
  }
}

/**
 * A hash of the files a peer is built from, so a changed source is rebuilt and an unchanged one
 * reused. Build outputs (target/) and vendor/ (unpacked from the registry by this script) are not
 * sources.
 */
async function sourceHash(dir, include) {
  const hash = createHash("sha256");
  const walk = async (current) => {
    const entries = (await readdir(current, { withFileTypes: true })).sort((a, b) =>
      a.name.localeCompare(b.name),
    );
    for (const entry of entries) {
      const path = join(current, entry.name);
      if (entry.isDirectory()) {
        if (entry.name !== "target" && entry.name !== "vendor") await walk(path);
      } else if (include(entry.name)) {
        hash
          .update(relative(dir, path))
          .update("\0")
          .update(await readFile(path))
          .update("\0");
      }
    }
  };
  await walk(dir);
  return hash.digest("hex");
}

async function readStamp(path) {
  try {
    return (await readFile(path, "utf8")).trim();
  } catch {
    return undefined;
  }
}

function seconds(since) {
  return `${((performance.now() - since) / 1000).toFixed(1)} s`;
}

/** Stable versions of a Go module from the module proxy, oldest first. */
async function moduleVersions(module) {
  const out = await run("go", ["list", "-m", "-versions", module], { capture: true });
  return out
    .split(/\s+/)
    .slice(1)
    .filter((version) => /^v\d+\.\d+\.\d+$/.test(version));
}

function compareVersions(a, b) {
  const pa = a.slice(1).split(".").map(Number);
  const pb = b.slice(1).split(".").map(Number);
  for (let i = 0; i < 3; i++) if ((pa[i] ?? 0) !== (pb[i] ?? 0)) return (pa[i] ?? 0) - (pb[i] ?? 0);
  return 0;
}

/** The newest patch of each line in {@link NATS_LINES} and the newest release, without repeats. */
function pickNatsVersions(available) {
  const sorted = [...available].sort(compareVersions);
  const picked = [];
  for (const line of NATS_LINES) {
    const newest = sorted.filter((version) => version.startsWith(`v${line}.`)).at(-1);
    if (newest) picked.push(newest);
    else console.log(`  no ${line}.x release on the module proxy`);
  }
  const latest = sorted.at(-1);
  if (latest && !picked.includes(latest)) picked.push(latest);
  return picked;
}

async function cachedNatsVersions() {
  try {
    return (await readdir(join(PEERS_DIR, "nats-server")))
      .filter((name) => name.startsWith("v"))
      .sort(compareVersions);
  } catch {
    return [];
  }
}

async function buildNats(force) {
  let versions;
  try {
    versions = pickNatsVersions(await moduleVersions(NATS_MODULE));
    console.log(`  versions from the Go module proxy: ${versions.join(", ")}`);
  } catch (err) {
    versions = await cachedNatsVersions();
    if (versions.length === 0) throw err;
    console.log(
      `  the Go module proxy did not answer (${err.message}); keeping the cached ${versions.join(", ")}`,
    );
  }
  for (const version of versions) {
    const gobin = join(PEERS_DIR, "nats-server", version);
    const bin = join(gobin, "nats-server");
    const started = performance.now();
    let action = "reused";
    if (force || !(await isExecutable(bin))) {
      await mkdir(gobin, { recursive: true });
      await niced("go", ["install", `${NATS_MODULE}@${version}`], {
        env: { GOBIN: gobin, GOFLAGS: "-p=1 -buildvcs=false", CGO_ENABLED: "0" },
      });
      action = `installed in ${seconds(started)}`;
    }
    const reported = await run(bin, ["--version"], { capture: true });
    console.log(`  nats-server ${version}: ${action} (${reported}) ${bin}`);
  }
}

async function buildOpa(force) {
  const source = join(ROOT, "peers", "opa-policy-server");
  const outDir = join(PEERS_DIR, "opa-policy-server");
  const bin = join(outDir, "opa-policy-server");
  const stampFile = join(outDir, "source.sha256");
  const hash = await sourceHash(source, (name) => /\.(go|rego)$|^go\.(mod|sum)$/.test(name));
  const started = performance.now();
  let action = "reused";
  if (force || !(await isExecutable(bin)) || (await readStamp(stampFile)) !== hash) {
    await mkdir(outDir, { recursive: true });
    await niced("go", ["build", "-trimpath", "-o", `${bin}.new`, "."], {
      cwd: source,
      env: { GOFLAGS: "-p=1 -buildvcs=false", CGO_ENABLED: "0" },
    });
    await rename(`${bin}.new`, bin);
    await writeFile(stampFile, `${hash}\n`);
    action = `built in ${seconds(started)}`;
  }
  const reported = await run(bin, ["-version"], { capture: true });
  console.log(`  opa-policy-server: ${action} (${reported}) ${bin}`);
}

/** The version of a package in a Cargo.lock, e.g. wasmcloud-host's. */
async function lockedCrateVersion(lockFile, name) {
  const lock = await readFile(lockFile, "utf8");
  const match = lock.match(new RegExp(`\\[\\[package\\]\\]\\nname = "${name}"\\nversion = "([^"]+)"`));
  if (!match?.[1]) throw new Error(`${name} is not in ${lockFile}`);
  return match[1];
}

/** The `.crate` archive cargo downloaded for `name@version`, or `undefined`. */
async function findCrateArchive(name, version) {
  const cache = join(cargoHome(process.env), "registry", "cache");
  let registries = [];
  try {
    registries = await readdir(cache);
  } catch {
    return undefined;
  }
  for (const registry of registries) {
    const archive = join(cache, registry, `${name}-${version}.crate`);
    try {
      await access(archive);
      return archive;
    } catch {
      // Not from this registry.
    }
  }
  return undefined;
}

/**
 * Unpacks wasmcloud-host `crate` as crates.io serves it into peers/wasmcloud-host/vendor/ (the
 * `[patch.crates-io]` of its Cargo.toml) and adds the one crate attribute rustc 1.95 needs to compile
 * it: `#![recursion_limit = "256"]` (without it: "queries overflow the depth limit!").
 */
async function vendorPatchedHost(source, crate) {
  const vendor = join(source, "vendor");
  const dir = join(vendor, "wasmcloud-host");
  const stampFile = join(dir, ".arbiter-patched");
  if ((await readStamp(stampFile)) === crate) return;
  let archive = await findCrateArchive("wasmcloud-host", crate);
  if (!archive) {
    // Cargo cannot fetch through the manifest whose patch is missing; a one-line manifest downloads it.
    const fetcher = join(PEERS_DIR, "fetch-wasmcloud-host");
    await mkdir(join(fetcher, "src"), { recursive: true });
    await writeFile(
      join(fetcher, "Cargo.toml"),
      `[package]\nname = "fetch"\nversion = "0.0.0"\nedition = "2021"\n\n[dependencies]\nwasmcloud-host = "=${crate}"\n`,
    );
    await writeFile(join(fetcher, "src", "main.rs"), "fn main() {}\n");
    await niced("cargo", ["fetch"], { cwd: fetcher });
    archive = await findCrateArchive("wasmcloud-host", crate);
    if (!archive) throw new Error(`cargo fetch did not download wasmcloud-host ${crate}`);
  }
  await rm(dir, { recursive: true, force: true });
  await mkdir(vendor, { recursive: true });
  await run("tar", ["xzf", archive, "-C", vendor]);
  await rename(join(vendor, `wasmcloud-host-${crate}`), dir);
  const lib = join(dir, "src", "lib.rs");
  await writeFile(lib, `#![recursion_limit = "256"]\n${await readFile(lib, "utf8")}`);
  await writeFile(stampFile, `${crate}\n`);
  console.log(
    `  unpacked wasmcloud-host ${crate} from ${archive} into ${relative(ROOT, dir)}, with #![recursion_limit = "256"]`,
  );
}

/** The host's source hash: main.rs, Cargo.toml and Cargo.lock (the crate itself is pinned there). */
function hostSourceHash(source) {
  return sourceHash(source, (name) => /\.rs$|^Cargo\.(toml|lock)$/.test(name));
}

async function buildHost(force) {
  const source = join(ROOT, "peers", "wasmcloud-host");
  const crate = await lockedCrateVersion(join(source, "Cargo.lock"), "wasmcloud-host");
  await vendorPatchedHost(source, crate);
  const outDir = join(PEERS_DIR, "wasmcloud-host", crate);
  const bin = join(outDir, HOST_BINARY);
  const stampFile = join(outDir, "source.sha256");
  const targetDir = join(PEERS_DIR, "cargo-target");
  const hash = await hostSourceHash(source);
  const started = performance.now();
  let action = "reused";
  if (force || !(await isExecutable(bin)) || (await readStamp(stampFile)) !== hash) {
    console.log(`  building wasmcloud-host ${crate} with one job; the first build takes long`);
    await mkdir(outDir, { recursive: true });
    await niced("cargo", ["build", "--release", "--locked", "-j", "1"], {
      cwd: source,
      env: { CARGO_TARGET_DIR: targetDir, CARGO_BUILD_JOBS: "1" },
    });
    await copyFile(join(targetDir, "release", HOST_BINARY), `${bin}.new`);
    await rename(`${bin}.new`, bin);
    await writeFile(stampFile, `${hash}\n`);
    action = `built in ${seconds(started)}`;
  }
  const reported = await run(bin, ["--version"], { capture: true });
  console.log(`  wasmcloud host: ${action} (${reported}) ${bin}`);
}

const STEPS = { nats: buildNats, opa: buildOpa, host: buildHost };

/** What `--check` requires: the suite's minimum, at least three nats-server releases from 2.10 on. */
async function checkCache() {
  const missing = [];
  const nats = (await cachedNatsVersions()).filter((version) => compareVersions(version, "v2.10.0") >= 0);
  const natsBins = [];
  for (const version of nats) {
    if (await isExecutable(join(PEERS_DIR, "nats-server", version, "nats-server"))) natsBins.push(version);
  }
  if (natsBins.length < 3)
    missing.push(`nats-server releases from 2.10 on (have ${natsBins.join(", ") || "none"})`);
  if (!(await isExecutable(join(PEERS_DIR, "opa-policy-server", "opa-policy-server"))))
    missing.push("the OPA policy server");
  let hosts = [];
  try {
    hosts = await readdir(join(PEERS_DIR, "wasmcloud-host"));
  } catch {
    // No host built yet.
  }
  const source = join(ROOT, "peers", "wasmcloud-host");
  const wanted = await lockedCrateVersion(join(source, "Cargo.lock"), "wasmcloud-host");
  let host;
  for (const crate of hosts)
    if (await isExecutable(join(PEERS_DIR, "wasmcloud-host", crate, HOST_BINARY))) host = crate;
  if (!host) missing.push("the wasmCloud host");
  else if (host !== wanted) missing.push(`the wasmCloud host on wasmcloud-host ${wanted} (have ${host})`);
  else {
    // A host built from another peers/wasmcloud-host (an older main.rs) lacks its flags.
    const stamp = await readStamp(join(PEERS_DIR, "wasmcloud-host", host, "source.sha256"));
    if (stamp !== (await hostSourceHash(source)))
      missing.push("a wasmCloud host built from the current peers/wasmcloud-host (it changed since)");
  }
  if (missing.length > 0) {
    console.log(`peers cache ${PEERS_DIR} lacks ${missing.join("; ")}: \`npm run peers\` builds them`);
    process.exit(1);
  }
  console.log(
    `peers cache ${PEERS_DIR}: nats-server ${natsBins.join(", ")}, OPA policy server, wasmCloud host (wasmcloud-host ${host})`,
  );
}

const { only, force, check } = parseArgs(process.argv.slice(2));
if (check) {
  await checkCache();
  process.exit(0);
}
console.log(`peers cache: ${PEERS_DIR}`);
await mkdir(PEERS_DIR, { recursive: true });
const failures = [];
for (const kind of only) {
  const started = performance.now();
  console.log(`== ${kind}`);
  try {
    await STEPS[kind](force);
    console.log(`== ${kind}: done in ${seconds(started)}`);
  } catch (err) {
    failures.push(kind);
    console.error(
      `== ${kind}: FAILED after ${seconds(started)}: ${err instanceof Error ? err.message : err}`,
    );
  }
}
if (failures.length > 0) {
  console.error(`failed: ${failures.join(", ")}`);
  process.exit(1);
}
