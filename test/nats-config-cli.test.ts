import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { findNatsServer } from "@arbiter/embedded-nats";
import { credsAuthenticator } from "@nats-io/transport-node";
import { afterAll, describe, expect, it } from "vitest";
import { connectTo, until } from "./harness/index.js";
import { runArbiter, spawnArbiter } from "./support/cli.js";
import { FIXTURES, fixtureBytes, fixtureJson } from "./support/fixtures.js";

const EXAMPLE = new URL("../deploy/rules/example.yaml", import.meta.url).pathname;

async function freePort(): Promise<number> {
  const probe = createServer();
  await new Promise<void>((resolve) => probe.listen(0, "127.0.0.1", resolve));
  const address = probe.address();
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  if (address === null || typeof address === "string") throw new Error("no port");
  return address.port;
}

describe("arbiter nats config", () => {
  const dirs: string[] = [];
  const temp = (name: string) => {
    const dir = mkdtempSync(join(tmpdir(), `arbiter-nats-config-${name}-`));
    dirs.push(dir);
    return dir;
  };
  afterAll(() => {
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });

  it("writes the password form for another lattice, its subjects in the hosts' permissions", async () => {
    const dir = temp("password");
    const result = await runArbiter(["nats", "config", dir, "--lattice", "prod-eu", "--json"]);
    expect(result.code, result.stderr).toBe(0);
    expect(JSON.parse(result.stdout)).toMatchObject({ dir });
    const accounts = readFileSync(join(dir, "accounts.conf"), "utf8");
    expect(accounts).toContain('"wasmbus.ctl.v1.prod-eu.>"');
    expect(accounts).not.toContain('"wasmbus.ctl.v1.default.>"');
    expect(readFileSync(join(dir, "single-node.conf"), "utf8")).toContain('include "./accounts.conf"');
  });

  it("refuses a lattice name that is no subject token, naming the flag", async () => {
    const result = await runArbiter(["nats", "config", temp("bad"), "--lattice", "a.>"]);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/--lattice "a\.>": not usable in NATS subjects/);
  });

  it("--jwt writes an operator-mode server a worker, an admin and a host sign in to with their .creds files", async () => {
    const dir = temp("jwt");
    const result = await runArbiter(["nats", "config", dir, "--jwt", "--json"]);
    expect(result.code, result.stderr).toBe(0);
    const out = JSON.parse(result.stdout) as { credentials: Record<"admin" | "worker" | "host", string> };
    for (const file of [...Object.values(out.credentials), join(dir, "operator.json")]) {
      expect(statSync(file).mode & 0o777, file).toBe(0o600);
    }
    // Keys once made are never overwritten by a second run.
    const again = await runArbiter(["nats", "config", dir, "--jwt"]);
    expect(again.code).toBe(2);
    expect(again.stderr).toMatch(/operator\.json exists/);

    const port = await freePort();
    const store = temp("store");
    const child = spawn(
      await findNatsServer(),
      ["-c", join(dir, "single-node.conf"), "-p", String(port), "-sd", store],
      { stdio: "ignore" },
    );
    const exited = new Promise((resolve) => child.once("exit", resolve));
    try {
      const url = `nats://127.0.0.1:${port}`;
      const admin = JSON.parse((await runArbiter(["trust", "keygen", "admin", "--json"])).stdout) as {
        publicKey: string;
        seed: string;
      };
      const worker = JSON.parse((await runArbiter(["trust", "keygen", "worker", "--json"])).stdout) as {
        publicKey: string;
        seed: string;
      };
      const common = { NATS_URL: url, ARBITER_HOME: join(store, "no-local-arbiter") };
      const asAdmin = { ...common, NATS_CREDS: out.credentials.admin, ARBITER_ADMIN_SEED: admin.seed };
      await until(
        async () => ((await runArbiter(["rules", "apply", EXAMPLE], asAdmin)).code === 0 ? true : undefined),
        { name: "rules apply with admin.creds", timeout: 30_000 },
      );
      const enrolled = await runArbiter(["workers", "enroll", worker.publicKey], asAdmin);
      expect(enrolled.code, enrolled.stderr).toBe(0);
      await using running = spawnArbiter(["worker"], {
        ...common,
        NATS_CREDS: out.credentials.worker,
        ARBITER_ADMIN_KEYS: admin.publicKey,
        ARBITER_WORKER_SEED: worker.seed,
        ARBITER_LOG_LEVEL: "info",
      });
      await until(() => running.stdout().includes(" ready at rules revision 3"), {
        name: "the worker's ready line",
        timeout: 30_000,
      });
      await using host = await connectTo(url, {
        authenticator: credsAuthenticator(readFileSync(out.credentials.host)),
      });
      for (const { name, permitted } of FIXTURES) {
        const reply = await host.request("wasmcloud.policy", fixtureBytes(name), { timeout: 10_000 });
        expect(reply.json<{ requestId: string; permitted: boolean }>(), name).toMatchObject({
          requestId: fixtureJson(name).requestId,
          permitted,
        });
      }
    } finally {
      child.kill("SIGTERM");
      await exited;
    }
  });
});
