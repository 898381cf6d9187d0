import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { generateKey } from "@arbiter/trust";
import { createWorker } from "@arbiter/worker";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectTo, type NatsServerProcess, startNatsServer, until } from "./harness/index.js";
import { configuredWorkerKey } from "./support/arbiter.js";
import { runArbiter, spawnArbiter } from "./support/cli.js";
import { fixtureBytes } from "./support/fixtures.js";

// `arbiter decisions tail | head -3` is how a newcomer looks at a busy log: when the reader goes,
// the command must end quietly, not die on an unhandled EPIPE with a Node stack trace.
describe("a command whose reader closes the pipe", () => {
  let server: NatsServerProcess;
  const home = mkdtempSync(join(tmpdir(), "arbiter-operator-pipes-"));
  const adminKey = generateKey("O");
  let env: Record<string, string>;

  beforeAll(async () => {
    server = await startNatsServer();
    const rules = join(home, "allow-all.yaml");
    writeFileSync(rules, "version: 1\ndefault: allow\nrules: []\n");
    env = { NATS_URL: server.url, ARBITER_HOME: join(home, "no-up-here"), ARBITER_LOG_LEVEL: "warn" };
    const applied = await runArbiter(["rules", "apply", rules], {
      ...env,
      ARBITER_ADMIN_SEED: adminKey.seed,
    });
    expect(applied.code, applied.stderr).toBe(0);
    const nc = await connectTo(server.url);
    const worker = createWorker({
      nc,
      logger: pino({ level: "silent" }),
      config: { adminKeys: [adminKey.publicKey], ...configuredWorkerKey() },
    });
    try {
      await worker.start();
      for (let i = 0; i < 20; i++)
        await nc.request("wasmcloud.policy", fixtureBytes("start-component"), { timeout: 5000 });
    } finally {
      await worker.stop();
      await nc.close();
    }
  });

  afterAll(async () => {
    await server?.stop();
    rmSync(home, { recursive: true, force: true });
  });

  it.each([[["decisions", "tail", "--since", "1h"]]])(
    "%j ends without an EPIPE stack trace once stdout is closed",
    async (args) => {
      await using running = spawnArbiter(args, env);
      running.child.stdout?.once("data", () => running.child.stdout?.destroy());
      const exited = await until(() => running.child.exitCode !== null || running.child.signalCode !== null, {
        name: `arbiter ${args.join(" ")} to end after its reader went`,
        timeout: 20_000,
      }).catch(() => false);
      expect(running.stderr()).not.toMatch(/EPIPE|Unhandled 'error' event/);
      expect(exited, running.stderr()).toBe(true);
    },
  );
});
