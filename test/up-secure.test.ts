import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { credsAuthenticator } from "@nats-io/nats-core";
import { afterAll, describe, expect, it } from "vitest";
import { until } from "./harness/index.js";
import { type RunningArbiter, runArbiter, spawnArbiter } from "./support/cli.js";
import { describePermissionAttacks, type SecuredNats } from "./support/permission-attacks.js";

const ROLES = ["host", "worker", "admin"] as const;

function upEnv(home: string): Record<string, string> {
  return {
    ARBITER_HOME: home,
    ARBITER_LOG_LEVEL: "warn",
    NATS_URL: "",
    ARBITER_ADMIN_SEED: "",
    ARBITER_ADMIN_KEYS: "",
  };
}

/** Starts `arbiter up` with `args` and resolves with its JSON line once it is ready. */
async function startUp(
  home: string,
  args: string[],
): Promise<{ up: RunningArbiter; started: Record<string, unknown> }> {
  const up = spawnArbiter(["up", "--json", "--port", "0", "--workers", "1", ...args], upEnv(home));
  try {
    const started = await until(
      () => {
        if (up.child.exitCode !== null) throw new Error(`arbiter up exited: ${up.stderr()}`);
        try {
          return JSON.parse(up.stdout()) as Record<string, unknown>;
        } catch {
          return undefined;
        }
      },
      { name: "arbiter up's JSON", timeout: 60_000 },
    );
    return { up, started };
  } catch (err) {
    // An `up` that never got ready is stopped here, as no test will stop it.
    await up.stop();
    throw err;
  }
}

describe("arbiter up --secure", () => {
  const home = mkdtempSync(join(tmpdir(), "arbiter-up-secure-"));
  let up: RunningArbiter | undefined;
  let credentials: Record<string, string> = {};

  afterAll(async () => {
    await up?.stop();
    rmSync(home, { recursive: true, force: true });
  });

  describePermissionAttacks("arbiter up --secure", async () => {
    const running = await startUp(home, ["--secure"]);
    up = running.up;
    expect(running.started).toMatchObject({ secure: true });
    credentials = running.started["credentials"] as Record<string, string>;
    const secured: SecuredNats = {
      url: String(running.started["url"]),
      adminSeed: readFileSync(join(home, "admin.seed"), "utf8").trim(),
      auth: (role) => ({ authenticator: credsFor(credentials[role]) }),
      cliEnv: (role) => ({ NATS_CREDS: credentials[role] ?? "" }),
      stop: async () => undefined,
    };
    return secured;
  });

  it("keeps every credential it generated in ARBITER_HOME with mode 0600, and names it for hosts", async () => {
    for (const role of ROLES) {
      const file = credentials[role];
      expect(file, role).toBeDefined();
      expect(statSync(file ?? "").mode & 0o777, role).toBe(0o600);
    }
    expect(statSync(join(home, "secure", "operator.json")).mode & 0o777).toBe(0o600);
  });

  it("tells a command of the same folder without credentials which file holds the admin's", async () => {
    const refused = await runArbiter(["status"], upEnv(home));
    expect(refused.code, refused.stderr).toBe(2);
    expect(refused.stderr).toContain(`export NATS_CREDS=${join(home, "secure", "admin.creds")}`);
    const signedIn = await runArbiter(["status"], { ...upEnv(home), NATS_CREDS: credentials["admin"] ?? "" });
    expect(signedIn.stderr).not.toMatch(/refused/);
  });
});

describe("arbiter up without --secure", () => {
  it("stays open and says so in one warning line", async () => {
    const home = mkdtempSync(join(tmpdir(), "arbiter-up-open-"));
    const { up, started } = await startUp(home, []);
    try {
      expect(started).toMatchObject({ secure: false });
      const warnings = up
        .stderr()
        .split("\n")
        .filter((l) => /runs open/.test(l));
      expect(warnings).toHaveLength(1);
    } finally {
      await up.stop();
      rmSync(home, { recursive: true, force: true });
    }
  });
});

function credsFor(file: string | undefined) {
  return credsAuthenticator(readFileSync(file ?? ""));
}
