import { generateKey } from "@arbiter/trust";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type NatsServerProcess, startNatsServer, until } from "./harness/index.js";
import { spawnArbiter } from "./support/cli.js";

describe("arbiter worker stopped by an operator while NATS is away", () => {
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
      ARBITER_HOME: "/nonexistent-arbiter-home",
      ARBITER_LOG_LEVEL: "info",
    });
    await until(() => worker.stdout().includes(" ready at rules revision"), {
      name: "the worker's ready line",
      timeout: 30_000,
    });
    await server.kill();
    await until(() => worker.stderr().includes("lost the connection to NATS"), {
      name: "the worker noticing NATS is gone",
      timeout: 20_000,
    });
    // A worker that hangs is killed (SIGKILL) by stop() after its grace period: its exit code is then null.
    expect(await worker.stop("SIGTERM"), worker.stderr()).toBe(0);
    expect(worker.stderr()).toMatch(/"msg":"worker stopped"/);
  });
});
