import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { generateKey } from "@arbiter/trust";
import { createWorker } from "@arbiter/worker";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectTo, type NatsServerProcess, startNatsServer } from "./harness/index.js";
import { configuredWorkerKey } from "./support/arbiter.js";
import { runArbiter } from "./support/cli.js";
import { fixtureJson } from "./support/fixtures.js";

// A request names its host key, and no one checks its checksum: a forged host shows in the HOST
// column with a key that `--host` refused ("invalid checksum"), so its records could not be
// picked out, though the message said to copy the key from that very column.
describe("--host with the key of a host that does not exist", () => {
  let server: NatsServerProcess;
  const home = mkdtempSync(join(tmpdir(), "arbiter-operator-host-filter-"));
  const adminKey = generateKey("O");
  const forged = `N${"A".repeat(55)}`;
  let env: Record<string, string>;

  beforeAll(async () => {
    server = await startNatsServer();
    const rules = join(home, "allow-all.yaml");
    writeFileSync(rules, "version: 1\ndefault: allow\nrules: []\n");
    env = {
      NATS_URL: server.url,
      ARBITER_HOME: join(home, "no-up-here"),
      ARBITER_ADMIN_KEYS: adminKey.publicKey,
      ARBITER_LOG_LEVEL: "warn",
    };
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
      const request = fixtureJson("start-component");
      request["host"] = { publicKey: forged, lattice: "default", labels: {} };
      await nc.request("wasmcloud.policy", JSON.stringify(request), { timeout: 5000 });
    } finally {
      await worker.stop();
      await nc.close();
    }
  });

  afterAll(async () => {
    await server?.stop();
    rmSync(home, { recursive: true, force: true });
  });

  it("decisions list finds its records, saying on stderr that no real host has that key", async () => {
    const listed = await runArbiter(["decisions", "list", "--host", forged], env);
    expect(listed.code, listed.stderr).toBe(0);
    expect(listed.stdout).toContain(forged);
    expect(listed.stdout.trimEnd().split("\n")).toHaveLength(2);
    expect(listed.stderr).toMatch(/--host "NAAAA.*": not a valid host key \(invalid checksum\)/);
  });

  it("revocations list and audit replay take it too", async () => {
    for (const args of [
      ["revocations", "list", "--host", forged],
      ["audit", "replay", "--host", forged],
    ]) {
      const result = await runArbiter(args, env);
      expect(result.code, `${args.join(" ")}: ${result.stderr}`).toBe(0);
      expect(result.stderr).toMatch(/not a valid host key \(invalid checksum\)/);
    }
  });
});
