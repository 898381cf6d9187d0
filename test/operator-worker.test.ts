import { generateKey } from "@arbiter/trust";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type NatsServerProcess, startNatsServer, until } from "./harness/index.js";
import { configuredWorkerEnv } from "./support/arbiter.js";
import { runArbiter, spawnArbiter } from "./support/cli.js";

describe("long-running commands while NATS is away", () => {
  let server: NatsServerProcess;

  beforeAll(async () => {
    server = await startNatsServer();
  });

  afterAll(async () => {
    await server?.stop();
  });

  it("exits 0 on SIGTERM instead of waiting for NATS forever to drain", async () => {
    await using worker = spawnArbiter(["worker", "--servers", server.url], {
      ARBITER_ADMIN_KEYS: generateKey("O").publicKey,
      ...configuredWorkerEnv(),
      ARBITER_HOME: "/nonexistent-arbiter-home",
      ARBITER_LOG_LEVEL: "info",
    });
    await until(() => worker.stdout().includes(" ready at rules revision"), {
      name: "the worker's ready line",
      timeout: 30_000,
    });
    // A fresh JetStream has no rules: the ready line says what that means for requests.
    expect(worker.stdout()).toMatch(
      / ready at rules revision 0 \(nats:\/\/[^)]+\), overrides on wasmcloud\.policy\.changes; no rules were applied yet, so every request is denied until `arbiter rules apply`\n/,
    );
    await server.kill();
    await until(() => worker.stderr().includes("lost the connection to NATS"), {
      name: "the worker noticing NATS is gone",
      timeout: 20_000,
    });
    // A worker that hangs is killed (SIGKILL) by stop() after its grace period: its exit code is then null.
    expect(await worker.stop("SIGTERM"), worker.stderr()).toBe(0);
    expect(worker.stderr()).toMatch(/"msg":"worker stopped"/);
  });

  it("decisions tail says when it loses NATS and when it is back, instead of looking like a quiet log", async () => {
    if (!server.running) await server.restart();
    const admin = generateKey("O");
    const env = {
      NATS_URL: server.url,
      ARBITER_ADMIN_SEED: admin.seed,
      ARBITER_HOME: "/nonexistent-arbiter-home",
      ARBITER_LOG_LEVEL: "info",
    };
    const rules = new URL("../deploy/rules/example.yaml", import.meta.url).pathname;
    const applied = await runArbiter(["rules", "apply", rules], env);
    expect(applied.code, applied.stderr).toBe(0);
    await using tail = spawnArbiter(["decisions", "tail"], env);
    await until(() => tail.stdout().startsWith("EVALUATED AT"), {
      name: "the tail's header",
      timeout: 20_000,
    });
    await server.kill();
    await until(() => tail.stderr().includes("lost the connection to NATS; reconnecting"), {
      name: "decisions tail saying it lost NATS",
      timeout: 20_000,
    });
    await server.restart();
    await until(() => tail.stderr().includes("reconnected to NATS"), {
      name: "decisions tail saying NATS is back",
      timeout: 20_000,
    });
    expect(await tail.stop("SIGINT"), tail.stderr()).toBe(0);
  });
});
