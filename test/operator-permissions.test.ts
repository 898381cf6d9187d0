import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { generateKey } from "@arbiter/trust";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type NatsServerProcess, startNatsServer } from "./harness/index.js";
import { runArbiter } from "./support/cli.js";
import { passwordUsers, type SecuredNats, TEST_PASSWORDS } from "./support/permission-attacks.js";

const ACCOUNTS = readFileSync(new URL("../deploy/nats/accounts.conf", import.meta.url), "utf8");
const EXAMPLE = new URL("../deploy/rules/example.yaml", import.meta.url).pathname;

// A new operator signs the CLI in with the first credentials at hand: a host's, or a worker's.
// NATS refuses them the admin's inbox, and the command must say that, not that Arbiter's streams
// are missing or JetStream is off, which sends the operator to start what is already running.
describe("the CLI signed in with credentials that may not do what it asks", () => {
  let server: NatsServerProcess;
  let nats: SecuredNats;
  const home = mkdtempSync(join(tmpdir(), "arbiter-operator-permissions-"));
  const common = { ARBITER_HOME: home, ARBITER_ADMIN_SEED: generateKey("O").seed };

  beforeAll(async () => {
    server = await startNatsServer({ extraConfig: ACCOUNTS, env: { ...TEST_PASSWORDS } });
    nats = passwordUsers(server.url, () => server.stop());
    const applied = await runArbiter(["rules", "apply", EXAMPLE], {
      ...common,
      NATS_URL: server.url,
      ...nats.cliEnv("admin"),
    });
    expect(applied.code, applied.stderr).toBe(0);
  });

  afterAll(async () => {
    await nats?.stop();
    rmSync(home, { recursive: true, force: true });
  });

  it.each([
    ["host", ["status"]],
    ["host", ["revocations", "list"]],
    ["host", ["rules", "apply", EXAMPLE]],
    ["worker", ["rules", "show"]],
    ["worker", ["audit", "verify"]],
  ] as const)("as the %s user, %j says NATS refused the permission (exit 2)", async (role, args) => {
    const env = { ...common, NATS_URL: server.url, ...nats.cliEnv(role) };
    const result = await runArbiter([...args], env);
    expect(result.stderr).not.toMatch(/no Arbiter streams|JetStream is not available/);
    expect(result.stderr).toMatch(
      /refused .*NATS_USER "(wasmcloud-host|arbiter-worker)".* permission to subscribe/,
    );
    expect(result.stderr).toMatch(/an admin's credentials/);
    expect(result.code).toBe(2);

    const json = await runArbiter([...args, "--json"], env);
    expect(json.code).toBe(2);
    const error = (JSON.parse(json.stderr.trim().split("\n").at(-1) ?? "{}") as { error: { code: string } })
      .error;
    expect(error.code).toBe("INVALID_CONFIG");
  });

  it("a worker signed in as the admin exits 2 saying it needs a worker's credentials", async () => {
    const env = { ...common, NATS_URL: server.url, ...nats.cliEnv("admin") };
    const result = await runArbiter(["worker", "--allow-unenrolled"], env);
    expect(result.stderr).toMatch(/refused NATS_USER "arbiter-admin".* permission to subscribe/);
    expect(result.stderr).toMatch(/this command needs a worker's credentials\. Sign in as arbiter-worker/);
    expect(result.code).toBe(2);
  });
});
