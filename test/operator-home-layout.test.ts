import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { until } from "./harness/index.js";
import { type RunningArbiter, spawnArbiter } from "./support/cli.js";

const RULES = `version: 1
default: deny
rules:
  - id: operators-own
    effect: allow
    when: kind == "startComponent"
`;

async function started(up: RunningArbiter): Promise<void> {
  await until(
    () =>
      up.stdout().includes("Ctrl-C stops everything") ||
      up.stdout().includes(`"dataDir"`) ||
      (up.child.exitCode !== null && `exited: ${up.stderr()}`),
    { name: "arbiter up ready", timeout: 40_000 },
  );
}

/** Runs an `up` to its exit, or, when it starts instead, stops it and says so. */
async function upOutcome(
  args: string[],
  env: Record<string, string>,
): Promise<{ code: number | "started"; stderr: string }> {
  await using up = spawnArbiter(args, env);
  await started(up);
  if (up.child.exitCode !== null) return { code: up.child.exitCode, stderr: up.stderr() };
  await up.stop();
  return { code: "started", stderr: up.stderr() };
}

describe("arbiter up on a home made by an earlier up run otherwise", () => {
  const home = mkdtempSync(join(tmpdir(), "arbiter-operator-layout-"));
  const secureHome = mkdtempSync(join(tmpdir(), "arbiter-operator-layout-secure-"));
  const rulesFile = join(home, "operators-own.yaml");
  writeFileSync(rulesFile, RULES);
  const env = (h: string) => ({
    ARBITER_HOME: h,
    ARBITER_LOG_LEVEL: "warn",
    NATS_URL: "",
    NATS_CREDS: "",
    ARBITER_ADMIN_SEED: "",
  });

  afterAll(() => {
    rmSync(home, { recursive: true, force: true });
    rmSync(secureHome, { recursive: true, force: true });
  });

  it("refuses --secure or --nodes 3 beside an open one-node up's rules, instead of starting a new deployment with the example rules", async () => {
    {
      await using up = spawnArbiter(["up", "--port", "0", "--workers", "1", "--rules", rulesFile], env(home));
      await started(up);
      expect(up.stdout()).toContain("applied");
      expect(await up.stop()).toBe(0);
    }
    for (const flags of [["--secure"], ["--nodes", "3"], ["--nodes", "3", "--secure"]]) {
      const refused = await upOutcome(["up", "--port", "0", "--workers", "1", ...flags, "--json"], env(home));
      expect(refused.code, `${flags.join(" ")}: ${refused.stderr}`).toBe(2);
      const error = JSON.parse(refused.stderr.trim().split("\n").at(-1) ?? "").error;
      expect(error.code).toBe("INVALID_CONFIG");
      expect(error.message).toContain(`ARBITER_HOME ${home} holds the streams of an \`arbiter up\``);
      expect(error.message).toContain("Run `arbiter up` to keep them, or set ARBITER_HOME to another folder");
      // Nothing was started or written for the refused layout.
      expect(existsSync(join(home, "nats-server.pid"))).toBe(false);
      expect(existsSync(join(home, "local.json"))).toBe(false);
      expect(existsSync(join(home, "nats-cluster"))).toBe(false);
    }
    // The home's own layout still starts, with the operator's rules kept.
    await using again = spawnArbiter(["up", "--port", "0", "--workers", "1"], env(home));
    await started(again);
    expect(again.stdout()).toMatch(/rules {7}revision 2: kept/);
    expect(await again.stop()).toBe(0);
  }, 240_000);

  it("refuses an open up beside a --secure up's rules, naming --secure", async () => {
    {
      await using up = spawnArbiter(
        ["up", "--port", "0", "--workers", "1", "--secure", "--rules", rulesFile],
        env(secureHome),
      );
      await started(up);
      expect(await up.stop()).toBe(0);
    }
    const refused = await upOutcome(["up", "--port", "0", "--workers", "1"], env(secureHome));
    expect(refused.code, refused.stderr).toBe(2);
    expect(refused.stderr).toContain(
      `arbiter: ARBITER_HOME ${secureHome} holds the streams of an \`arbiter up --secure\` (one node, operator-mode accounts), which this \`arbiter up\` (one node, open) cannot see`,
    );
    expect(existsSync(join(secureHome, "nats-server.pid"))).toBe(false);
  }, 120_000);
});
