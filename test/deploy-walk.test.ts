import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { findNatsServer } from "@arbiter/embedded-nats";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectTo, until } from "./harness/index.js";
import { runArbiter, spawnArbiter } from "./support/cli.js";
import { FIXTURES, fixtureBytes, fixtureJson } from "./support/fixtures.js";
import { TEST_PASSWORDS } from "./support/permission-attacks.js";

const SINGLE_NODE = new URL("../deploy/nats/single-node.conf", import.meta.url).pathname;
const EXAMPLE = new URL("../deploy/rules/example.yaml", import.meta.url).pathname;

/** A port nothing listens on now, for a nats-server started by hand as the README says. */
async function freePort(): Promise<number> {
  const probe = createServer();
  await new Promise<void>((resolve) => probe.listen(0, "127.0.0.1", resolve));
  const address = probe.address();
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  if (address === null || typeof address === "string") throw new Error("no port");
  return address.port;
}

/** `arbiter trust keygen KIND --json`, parsed. */
async function keygen(kind: string): Promise<{ publicKey: string; seed: string }> {
  const result = await runArbiter(["trust", "keygen", kind, "--json"]);
  expect(result.code, result.stderr).toBe(0);
  return JSON.parse(result.stdout) as { publicKey: string; seed: string };
}

// The README's "Deploying on NATS" steps, exactly as written there: nothing more on the command line.
describe("deploying on deploy/nats/single-node.conf as the README says", () => {
  let url: string;
  let dir: string;
  let stopServer: () => Promise<void>;

  beforeAll(async () => {
    const port = await freePort();
    dir = mkdtempSync(join(tmpdir(), "arbiter-deploy-walk-"));
    const child = spawn(await findNatsServer(), ["-c", SINGLE_NODE, "-p", String(port), "-sd", dir], {
      env: { ...process.env, ...TEST_PASSWORDS },
      stdio: "ignore",
    });
    const exited = new Promise((resolve) => child.once("exit", resolve));
    stopServer = async () => {
      child.kill("SIGTERM");
      await exited;
    };
    url = `nats://127.0.0.1:${port}`;
  });

  afterAll(async () => {
    await stopServer?.();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("an admin applies rules, enrolls a worker key, the worker starts and hosts get answers", async () => {
    const common = { NATS_URL: url, ARBITER_HOME: join(dir, "no-local-arbiter") };
    const admin = await keygen("admin");
    const workerKey = await keygen("worker");
    const asAdmin = {
      ...common,
      NATS_USER: "arbiter-admin",
      NATS_PASSWORD: TEST_PASSWORDS["ARBITER_ADMIN_PASSWORD"] ?? "",
      ARBITER_ADMIN_SEED: admin.seed,
    };
    const applied = await until(
      async () => {
        const result = await runArbiter(["rules", "apply", EXAMPLE], asAdmin);
        return result.code === 0 ? result : undefined;
      },
      { name: "rules apply as arbiter-admin", timeout: 30_000 },
    );
    expect(applied.stdout).toMatch(/rules applied at revision 2/);
    const enrolled = await runArbiter(["workers", "enroll", workerKey.publicKey, "--name", "w1"], asAdmin);
    expect(enrolled.code, enrolled.stderr).toBe(0);
    const listed = await runArbiter(["workers", "list", "--json"], asAdmin);
    expect(listed.code, listed.stderr).toBe(0);
    const { deployment } = JSON.parse(listed.stdout) as { deployment: string };
    // The id step 4 pins the workers to is in the first apply's own line too.
    expect(applied.stdout).toContain(`rules applied at revision 2 of deployment ${deployment} (`);

    await using worker = spawnArbiter(["worker"], {
      ...common,
      NATS_USER: "arbiter-worker",
      NATS_PASSWORD: TEST_PASSWORDS["ARBITER_WORKER_PASSWORD"] ?? "",
      ARBITER_ADMIN_KEYS: admin.publicKey,
      ARBITER_WORKER_SEED: workerKey.seed,
      ARBITER_DEPLOYMENT: deployment,
      ARBITER_LOG_LEVEL: "info",
    });
    await until(() => worker.stdout().includes(" ready at rules revision 3"), {
      name: "the worker's ready line",
      timeout: 30_000,
    });

    await using host = await connectTo(url, {
      user: "wasmcloud-host",
      pass: TEST_PASSWORDS["WASMCLOUD_HOST_PASSWORD"],
    });
    for (const { name, permitted } of FIXTURES) {
      const reply = await host.request("wasmcloud.policy", fixtureBytes(name), { timeout: 10_000 });
      const request = fixtureJson(name);
      const answer = reply.json<{ requestId: string; permitted: boolean }>();
      expect(answer.requestId, name).toBe(request["requestId"]);
      expect(answer.permitted, name).toBe(permitted);
    }
    expect(worker.stderr()).not.toMatch(/not an inbox/);

    const audit = await runArbiter(["audit", "verify", "--json"], asAdmin);
    expect(audit.code, audit.stdout + audit.stderr).toBe(0);
    expect(JSON.parse(audit.stdout)).toMatchObject({ valid: true, decisions: { checked: 3, verified: 3 } });
  });
});
