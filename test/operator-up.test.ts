import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openJetStreamStore } from "@arbiter/store";
import { createSigner, generateKey, signJson } from "@arbiter/trust";
import { afterAll, describe, expect, it } from "vitest";
import { connectTo, startNatsServer, until } from "./harness/index.js";
import { type RunningArbiter, runArbiter, spawnArbiter } from "./support/cli.js";

describe("what arbiter up tells a new operator to do next", () => {
  const home = mkdtempSync(join(tmpdir(), "arbiter-operator-up-"));
  const admin = generateKey("O");
  let up: RunningArbiter | undefined;

  afterAll(async () => {
    await up?.stop();
    rmSync(home, { recursive: true, force: true });
  });

  it("with ARBITER_ADMIN_SEED and ARBITER_HOME set, prints where the seed is and commands that work elsewhere", async () => {
    const env = {
      ARBITER_HOME: home,
      ARBITER_ADMIN_SEED: admin.seed,
      ARBITER_ADMIN_KEYS: "",
      ARBITER_LOG_LEVEL: "warn",
      NATS_URL: "",
    };
    up = spawnArbiter(["up", "--port", "0", "--workers", "1"], env);
    await until(
      () =>
        up!.stdout().includes("Ctrl-C stops everything") ||
        (up!.child.exitCode !== null && `exited: ${up!.stderr()}`),
      { name: "arbiter up ready", timeout: 30_000 },
    );
    const out = up.stdout();
    expect(out).toContain(`admin key   ${admin.publicKey} (seed from ARBITER_ADMIN_SEED)`);
    expect(existsSync(join(home, "admin.seed"))).toBe(false);
    // `arbiter` is on PATH only once linked, and without ARBITER_HOME the CLI would not find this up.
    expect(out).toContain(
      `:\n  export ARBITER_HOME=${home}\n  npx arbiter rules show\n  npx arbiter rules apply FILE\n  npx arbiter decisions tail\n`,
    );
    // The rules line names the revision of the rules in force, not the enrollment event after it.
    expect(out).toMatch(
      /\n {2}rules {7}revision 2: applied \S*example\.yaml \(the rules stream was empty: the example rules\); the history is at revision 3\n/,
    );

    // The hint works as printed (through the built CLI here, as npx runs it).
    const shown = await runArbiter(["rules", "show", "--json"], { ARBITER_HOME: home, NATS_URL: "" });
    expect(shown.code, shown.stderr).toBe(0);
    expect(JSON.parse(shown.stdout)).toMatchObject({ revision: 3, latestRejected: null });
  });

  it("refuses, naming ARBITER_HOME, data whose rules history is of the earlier unchained format", async () => {
    const oldHome = mkdtempSync(join(tmpdir(), "arbiter-operator-old-"));
    try {
      // The stream as an earlier Arbiter left it: signed events without deployment or prev.
      const server = await startNatsServer({ storeDir: join(oldHome, "nats") });
      try {
        const nc = await connectTo(server.url);
        const store = await openJetStreamStore(nc);
        const signer = createSigner(admin.seed);
        const old = {
          type: "ruleset.replaced",
          eventId: "old",
          at: new Date().toISOString(),
          actor: signer.publicKey,
        };
        await store.rules.append(
          signJson(
            { ...old, previous: 0, payload: { document: { version: 1, default: "allow", rules: [] } } },
            signer,
          ),
          0,
        );
        await nc.close();
      } finally {
        await server.stop();
      }
      const result = await runArbiter(["up", "--port", "0", "--workers", "1"], {
        ARBITER_HOME: oldHome,
        ARBITER_ADMIN_SEED: admin.seed,
        ARBITER_ADMIN_KEYS: "",
        ARBITER_LOG_LEVEL: "warn",
        NATS_URL: "",
      });
      expect(result.code, result.stderr).toBe(4);
      expect(result.stderr).toContain("no genesis event at revision 1");
      expect(result.stderr).toContain(`The rules in ${oldHome} cannot be used: remove that folder`);
    } finally {
      rmSync(oldHome, { recursive: true, force: true });
    }
  });

  it("stops, exits 4 and says why when its nats-server dies, instead of running on with nothing to serve", async () => {
    const lostHome = mkdtempSync(join(tmpdir(), "arbiter-operator-lost-"));
    try {
      const env = { ARBITER_HOME: lostHome, ARBITER_LOG_LEVEL: "warn", NATS_URL: "", ARBITER_ADMIN_SEED: "" };
      await using lonely = spawnArbiter(["up", "--port", "0", "--workers", "1"], env);
      await until(
        () =>
          lonely.stdout().includes("Ctrl-C stops everything") ||
          (lonely.child.exitCode !== null && `exited: ${lonely.stderr()}`),
        { name: "arbiter up ready", timeout: 30_000 },
      );
      const natsPid = Number(readFileSync(join(lostHome, "nats-server.pid"), "utf8").trim());
      process.kill(natsPid, "SIGKILL");
      const code = await until(() => lonely.child.exitCode ?? false, {
        name: "arbiter up to exit after its nats-server died",
        timeout: 20_000,
      });
      expect(code, lonely.stderr()).toBe(4);
      expect(lonely.stderr()).toMatch(
        new RegExp(
          `^arbiter: nats-server nats://127\\.0\\.0\\.1:\\d+ \\(pid ${natsPid}\\) was killed by SIGKILL`,
          "m",
        ),
      );
      // Nothing is left for the next command to mistake for a running up.
      expect(existsSync(join(lostHome, "local.json"))).toBe(false);
      expect(existsSync(join(lostHome, "nats-server.pid"))).toBe(false);
    } finally {
      rmSync(lostHome, { recursive: true, force: true });
    }
  });
});
