import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type NatsServerProcess, startNatsServer } from "./harness/index.js";
import { runArbiter } from "./support/cli.js";

// Settings the NATS client refuses before it asks any server were reported as "cannot connect to
// NATS … Start one with `arbiter up`" (exit 4), sending a newcomer to start a NATS that runs.
describe("connection settings the NATS client cannot use", () => {
  let server: NatsServerProcess;
  const home = mkdtempSync(join(tmpdir(), "arbiter-operator-connect-"));
  let env: Record<string, string>;

  beforeAll(async () => {
    server = await startNatsServer();
    env = { NATS_URL: server.url, ARBITER_HOME: home };
  });

  afterAll(async () => {
    await server?.stop();
    rmSync(home, { recursive: true, force: true });
  });

  it("a NATS_CREDS file that is no credentials file is named (exit 2)", async () => {
    const notCreds = join(home, "notes.txt");
    writeFileSync(notCreds, "hello\n");
    const result = await runArbiter(["status"], { ...env, NATS_CREDS: notCreds });
    expect(result.code, result.stderr).toBe(2);
    expect(result.stderr).toContain(`NATS_CREDS (${notCreds}): unable to parse credentials`);
    expect(result.stderr).not.toMatch(/Start one with/);
  });

  it("a NATS_INBOX_PREFIX with a wildcard is named (exit 2)", async () => {
    const result = await runArbiter(["revocations", "list"], { ...env, NATS_INBOX_PREFIX: "mine.>" });
    expect(result.code, result.stderr).toBe(2);
    expect(result.stderr).toMatch(
      /inbox prefix "mine\.>" \(NATS_INBOX_PREFIX.*\): 'prefix' cannot have wildcards/,
    );
  });

  it("a server URL that is no URL is named (exit 2)", async () => {
    const result = await runArbiter(["rules", "show", "--servers", "nats://127.0.0.1:port"]);
    expect(result.code, result.stderr).toBe(2);
    expect(result.stderr).toMatch(/--servers \(or NATS_URL\) nats:\/\/127\.0\.0\.1:port: Invalid URL/);
  });
});
