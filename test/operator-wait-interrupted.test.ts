import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { generateKey } from "@arbiter/trust";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type NatsServerProcess, startNatsServer, until } from "./harness/index.js";
import { runArbiter, spawnArbiter } from "./support/cli.js";

const EXAMPLE = new URL("../deploy/rules/example.yaml", import.meta.url).pathname;

// Ctrl-C during `rules apply --wait --json` printed "arbiter: rules written at revision N …" as
// text, where every other error of --json, the other three of --wait included, is
// {"error": {code, message, written}} that a script reads without parsing the message.
describe("rules apply --wait --json stopped while waiting", () => {
  let server: NatsServerProcess;
  const home = mkdtempSync(join(tmpdir(), "arbiter-operator-wait-int-"));
  const admin = generateKey("O");
  const worker = generateKey("N");
  let env: Record<string, string>;

  beforeAll(async () => {
    server = await startNatsServer();
    env = {
      NATS_URL: server.url,
      ARBITER_HOME: join(home, "no-up-here"),
      ARBITER_ADMIN_SEED: admin.seed,
      ARBITER_ADMIN_KEYS: admin.publicKey,
      ARBITER_LOG_LEVEL: "warn",
    };
    for (const args of [
      ["rules", "apply", EXAMPLE],
      ["workers", "enroll", worker.publicKey],
    ]) {
      const done = await runArbiter(args, env);
      expect(done.code, done.stderr).toBe(0);
    }
  });

  afterAll(async () => {
    await server?.stop();
    rmSync(home, { recursive: true, force: true });
  });

  async function latestRevision(): Promise<number> {
    const shown = await runArbiter(["rules", "history", "--json"], env);
    expect(shown.code, shown.stderr).toBe(0);
    return (JSON.parse(shown.stdout) as unknown[]).length;
  }

  it("reports the revision written as a JSON error, exit 5", async () => {
    await using running = spawnArbiter(["worker", "--name", "w1"], {
      ...env,
      ARBITER_WORKER_SEED: worker.seed,
    });
    await until(
      () => running.stdout().includes("ready at rules revision") || running.child.exitCode !== null,
      {
        name: "worker ready",
        timeout: 30_000,
      },
    );
    expect(running.child.exitCode, running.stderr()).toBeNull();
    // A worker whose key was removed answers its status and takes no part in the fan-out: the
    // wait for the scan report lasts until the timeout.
    const removed = await runArbiter(["workers", "remove", worker.publicKey], env);
    expect(removed.code, removed.stderr).toBe(0);
    const before = await latestRevision();

    await using waiting = spawnArbiter(["rules", "apply", EXAMPLE, "--wait", "--json"], env);
    await until(async () => (await latestRevision()) === before + 1, {
      name: "the revision written",
      timeout: 20_000,
    });
    const code = await waiting.stop("SIGINT");
    expect(code, waiting.stderr()).toBe(5);
    expect(waiting.stdout()).toBe("");
    const lines = waiting.stderr().trim().split("\n");
    const error = JSON.parse(lines.at(-1) ?? "").error;
    expect(error).toMatchObject({
      code: "WAIT_INTERRUPTED",
      written: { revision: before + 1 },
    });
    expect(error.written.deployment).toMatch(/^[A-Z2-7]{26}$/);
    expect(error.message).toContain(`rules written at revision ${before + 1}`);
    expect(error.message).toContain("stopped waiting for their enforcement (SIGINT)");
  }, 90_000);
});
