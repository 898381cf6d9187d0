import { spawn } from "node:child_process";
import { accessSync, constants, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { isProcessAlive } from "@arbiter/embedded-nats";
import { afterAll, describe, expect, it } from "vitest";
import { type NatsServerProcess, startNatsServer, until } from "./harness/index.js";
import { type RunningArbiter, runArbiter, spawnArbiter } from "./support/cli.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const MAIN = join(ROOT, "apps/cli/dist/main.js");

/** What `arbiter up --json` prints once it is up. */
interface UpReport {
  url: string;
  servers: string[];
  natsPids: number[];
  revision: number;
  deployment: string;
  workerKeys: string[];
  rules: { file: string | null; applied: boolean; reason: string };
}

/**
 * How long an up may take to drain its workers and stop its nats-server before the test kills it:
 * on a machine starved by parallel test files that has taken more than 10 s.
 */
const UP_STOP_MS = 30_000;

async function allGone(pids: readonly number[], name: string): Promise<void> {
  await until(() => pids.every((pid) => !isProcessAlive(pid)), { name, timeout: 20_000 });
}

/** Waits for `up --json` to print its report (or to exit, which fails with its stderr). */
async function report(up: RunningArbiter): Promise<UpReport> {
  return until(
    () => {
      if (up.child.exitCode !== null)
        throw new Error(`arbiter up exited ${up.child.exitCode}: ${up.stderr()}`);
      try {
        return JSON.parse(up.stdout()) as UpReport;
      } catch {
        return null;
      }
    },
    { name: "the report of arbiter up --json", timeout: 45_000 },
  );
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const address = probe.address();
      const port = typeof address === "object" && address ? address.port : 0;
      probe.close(() => resolve(port));
    });
  });
}

describe("arbiter up over restarts, signals and crashes", () => {
  const homes: string[] = [];
  const running: RunningArbiter[] = [];
  const servers: NatsServerProcess[] = [];

  function newHome(): Record<string, string> {
    const home = mkdtempSync(join(tmpdir(), "arbiter-up-life-"));
    homes.push(home);
    return {
      ARBITER_HOME: home,
      ARBITER_LOG_LEVEL: "info",
      ARBITER_LOG_FORMAT: "json",
      NATS_URL: "",
      ARBITER_ADMIN_SEED: "",
      ARBITER_ADMIN_KEYS: "",
    };
  }

  function up(args: string[], env: Record<string, string>): RunningArbiter {
    const child = spawnArbiter(["up", "--workers", "1", "--port", "0", "--json", ...args], env);
    running.push(child);
    return child;
  }

  afterAll(async () => {
    for (const child of running) await child.stop("SIGKILL");
    for (const server of servers) await server.stop();
    for (const home of homes) {
      const pidFile = join(home, "nats-server.pid");
      if (existsSync(pidFile)) {
        for (const pid of readFileSync(pidFile, "utf8")
          .split("\n")
          .map(Number)
          .filter((p) => p > 0)) {
          if (isProcessAlive(pid)) process.kill(pid, "SIGKILL");
        }
      }
      rmSync(home, { recursive: true, force: true });
    }
  });

  it("keeps the operator's rules on restart, stops on SIGTERM and SIGHUP, and cleans up after kill -9", async () => {
    const env = newHome();
    const home = env.ARBITER_HOME!;
    const first = up([], env);
    const r1 = await report(first);
    expect(r1.rules).toMatchObject({
      applied: true,
      reason: expect.stringMatching(/rules stream was empty/),
    });
    // Genesis, the example rules, and the worker key enrolled.
    expect(r1.revision).toBe(3);
    expect(r1.deployment).toMatch(/^[A-Z2-7]{26}$/);
    expect(first.stderr()).toMatch(/"msg":"rules applied"/);

    const operatorRules = join(home, "allow-all.yaml");
    writeFileSync(operatorRules, "version: 1\ndefault: allow\nrules: []\n");
    const applied = await runArbiter(["rules", "apply", operatorRules], env);
    expect(applied.code, applied.stderr).toBe(0);

    expect(await first.stop("SIGTERM", UP_STOP_MS), first.stderr()).toBe(0);
    await allGone(r1.natsPids, "the nats-server of the first up to exit after SIGTERM");
    expect(existsSync(join(home, "local.json"))).toBe(false);
    expect(existsSync(join(home, "nats-server.pid"))).toBe(false);

    const second = up([], env);
    const r2 = await report(second);
    expect(r2.rules).toMatchObject({
      applied: false,
      reason: expect.stringMatching(/already has revision 4/),
    });
    expect(second.stderr()).toMatch(/"msg":"rules kept"/);
    const shown = await runArbiter(["rules", "show", "--json"], env);
    expect(JSON.parse(shown.stdout)).toMatchObject({ revision: 4, document: { default: "allow" } });
    // The worker's seed is kept in ARBITER_HOME: a restart enrolls nothing again.
    expect(r2.deployment).toBe(r1.deployment);
    expect(r2.workerKeys).toEqual(r1.workerKeys);
    expect(await second.stop("SIGHUP", UP_STOP_MS), second.stderr()).toBe(0);
    await allGone(r2.natsPids, "the nats-server of the second up to exit after SIGHUP");
    expect(existsSync(join(home, "local.json"))).toBe(false);

    const example = join(ROOT, "deploy/rules/example.yaml");
    const third = up(["--rules", example], env);
    const r3 = await report(third);
    expect(r3.rules).toMatchObject({ applied: true, reason: "--rules given" });
    expect(r3.revision).toBe(5);
    expect(await third.stop("SIGKILL")).toBe(null);
    expect(r3.natsPids.some((pid) => isProcessAlive(pid))).toBe(true);
    expect(existsSync(join(home, "local.json"))).toBe(true);

    const fourth = up([], env);
    const r4 = await report(fourth);
    await allGone(r3.natsPids, "the nats-server left by the killed up to be stopped by the next");
    expect(fourth.stderr()).toMatch(/stopped the nats-server left running by an earlier arbiter up/);
    expect(JSON.parse(readFileSync(join(home, "local.json"), "utf8"))).toMatchObject({
      pid: fourth.child.pid,
    });
    expect(r4).toMatchObject({ revision: 5, rules: { applied: false } });
    expect(await fourth.stop("SIGINT", UP_STOP_MS), fourth.stderr()).toBe(0);
    await allGone(r4.natsPids, "the nats-server of the fourth up to exit after SIGINT");
  }, 180_000);

  it("starts again on its --port after a kill -9, stopping the nats-server that held it", async () => {
    const env = newHome();
    const port = await freePort();
    const killed = spawnArbiter(["up", "--workers", "1", "--port", String(port), "--json"], env);
    running.push(killed);
    const r1 = await report(killed);
    expect(await killed.stop("SIGKILL")).toBe(null);
    expect(r1.natsPids.some((pid) => isProcessAlive(pid))).toBe(true);

    const again = spawnArbiter(["up", "--workers", "1", "--port", String(port), "--json"], env);
    running.push(again);
    const r2 = await report(again);
    expect(r2.servers[0]).toBe(`nats://127.0.0.1:${port}`);
    await allGone(r1.natsPids, "the nats-server left by the killed up to be stopped by the next");
    expect(await again.stop("SIGTERM"), again.stderr()).toBe(0);
    await allGone(r2.natsPids, "the nats-server of the second up to exit after SIGTERM");
  });

  it("refuses to start when its pid file names a nats-server that is not its own", async () => {
    const env = newHome();
    const stranger = await startNatsServer();
    servers.push(stranger);
    writeFileSync(join(env.ARBITER_HOME!, "nats-server.pid"), `${stranger.pid}\n`);
    const result = await runArbiter(["up", "--port", "0"], env);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain(`pid ${stranger.pid}`);
    expect(stranger.running).toBe(true);
  });

  it("exits 4 when there is no nats-server", async () => {
    const env = { ...newHome(), NATS_SERVER_BIN: "/nonexistent/nats-server" };
    const result = await runArbiter(["up", "--json"], env);
    expect(result.code).toBe(4);
    expect(JSON.parse(result.stderr)).toMatchObject({ error: { code: "NATS_SERVER_NOT_FOUND" } });
  });

  it("--nodes 3 keeps its data under ARBITER_HOME across restarts and listens on --port", async () => {
    const env = newHome();
    const port = await freePort();
    const cluster = spawnArbiter(
      ["up", "--nodes", "3", "--workers", "1", "--port", String(port), "--json"],
      env,
    );
    running.push(cluster);
    const r = await report(cluster);
    expect(r.servers[0]).toBe(`nats://127.0.0.1:${port}`);
    for (const node of ["n1", "n2", "n3"]) {
      expect(existsSync(join(env.ARBITER_HOME!, "nats-cluster", node, "jetstream")), node).toBe(true);
    }
    expect(await cluster.stop("SIGTERM"), cluster.stderr()).toBe(0);
    await allGone(r.natsPids, "the three nats-servers to exit after SIGTERM");

    // Started again on the same folder, the cluster has its streams and rules back.
    const again = spawnArbiter(["up", "--nodes", "3", "--workers", "1", "--port", "0", "--json"], env);
    running.push(again);
    const r2 = await report(again);
    expect(r2).toMatchObject({ revision: 3, rules: { applied: false } });
    expect(await again.stop("SIGTERM"), again.stderr()).toBe(0);
    await allGone(r2.natsPids, "the restarted nats-servers to exit after SIGTERM");
  });

  it("npm start stopped with SIGTERM leaves neither arbiter up nor its nats-server running", async () => {
    const env = newHome();
    const home = env.ARBITER_HOME!;
    const npm = spawn("npm", ["start", "--", "--port", "0", "--workers", "1"], {
      cwd: ROOT,
      env: { ...process.env, ...env },
      stdio: "pipe",
    });
    let out = "";
    npm.stdout.on("data", (chunk: Buffer) => {
      out += chunk.toString();
    });
    const exited = new Promise<void>((resolve) => npm.on("exit", () => resolve()));
    try {
      await until(() => out.includes("Ctrl-C stops everything") && existsSync(join(home, "local.json")), {
        name: "npm start to bring arbiter up",
        timeout: 60_000,
      });
      const upPid = (JSON.parse(readFileSync(join(home, "local.json"), "utf8")) as { pid: number }).pid;
      const natsPids = readFileSync(join(home, "nats-server.pid"), "utf8")
        .split("\n")
        .map(Number)
        .filter(Boolean);
      npm.kill("SIGTERM");
      await exited;
      await allGone([upPid, ...natsPids], "arbiter up and its nats-server after SIGTERM to npm start");
      expect(existsSync(join(home, "local.json"))).toBe(false);
    } finally {
      if (npm.exitCode === null) npm.kill("SIGKILL");
    }
  });

  it("builds an executable arbiter that npx runs", async () => {
    accessSync(MAIN, constants.X_OK);
    const bin = join(ROOT, "node_modules/.bin/arbiter");
    const help = await new Promise<number | null>((resolve, reject) => {
      const child = spawn(bin, ["--help"], { stdio: "ignore" });
      child.on("error", reject);
      child.on("exit", (code) => resolve(code));
    });
    expect(help).toBe(0);
  });
});
