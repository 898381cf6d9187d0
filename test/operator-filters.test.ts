import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { generateKey } from "@arbiter/trust";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type NatsServerProcess, startNatsServer, until } from "./harness/index.js";
import { runArbiter, spawnArbiter } from "./support/cli.js";

// Kinds are compared exactly, so `--kind startcomponent` (the case a newcomer types) matched
// nothing and printed "no decisions", as if no host had asked.
describe("decisions list|tail --kind", () => {
  let server: NatsServerProcess;
  const home = mkdtempSync(join(tmpdir(), "arbiter-operator-filters-"));
  let env: Record<string, string>;

  beforeAll(async () => {
    server = await startNatsServer();
    const rules = join(home, "allow-all.yaml");
    writeFileSync(rules, "version: 1\ndefault: allow\nrules: []\n");
    env = { NATS_URL: server.url, ARBITER_HOME: join(home, "no-up-here"), ARBITER_LOG_LEVEL: "warn" };
    const applied = await runArbiter(["rules", "apply", rules], {
      ...env,
      ARBITER_ADMIN_SEED: generateKey("O").seed,
    });
    expect(applied.code, applied.stderr).toBe(0);
  });

  afterAll(async () => {
    await server?.stop();
    rmSync(home, { recursive: true, force: true });
  });

  it("decisions list refuses a kind in the wrong case, naming the kind it means", async () => {
    const result = await runArbiter(["decisions", "list", "--kind", "startcomponent"], env);
    expect(result.code, result.stderr).toBe(2);
    expect(result.stderr).toMatch(/--kind "startcomponent": kinds are compared exactly: startComponent/);
  });

  it("decisions tail refuses it too, at once, instead of following nothing", async () => {
    await using tail = spawnArbiter(["decisions", "tail", "--kind", "startcomponent"], env);
    const code = await until(() => tail.child.exitCode ?? false, {
      name: "decisions tail to exit on its --kind",
      timeout: 20_000,
    }).catch(() => null);
    expect(code, tail.stderr()).toBe(2);
    expect(tail.stderr()).toMatch(/--kind "startcomponent": kinds are compared exactly: startComponent/);
  });

  it("decisions list with a kind no worker records says so beside the empty result", async () => {
    const result = await runArbiter(["decisions", "list", "--kind", "bogus"], env);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toBe("no decisions\n");
    expect(result.stderr).toMatch(
      /--kind "bogus" is none of startComponent, startProvider, performInvocation, unknown/,
    );
  });
});
