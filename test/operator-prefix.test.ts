import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type NatsServerProcess, startNatsServer } from "./harness/index.js";
import { runArbiter } from "./support/cli.js";

// A prefix that cannot name a stream is a setting of the operator's, and exit 2 names where it
// came from; it was reported as an internal error (exit 1) by every command but the worker.
describe("a resource prefix that cannot be used", () => {
  let server: NatsServerProcess;
  const home = mkdtempSync(join(tmpdir(), "arbiter-operator-prefix-"));

  beforeAll(async () => {
    server = await startNatsServer();
  });

  afterAll(async () => {
    await server?.stop();
    rmSync(home, { recursive: true, force: true });
  });

  it.each([[["status"]], [["revocations", "list"]], [["rules", "show"]]])(
    "%j exits 2 naming --prefix or ARBITER_PREFIX",
    async (args) => {
      const env = { NATS_URL: server.url, ARBITER_HOME: home };
      const flag = await runArbiter([...args, "--prefix", "a b", "--json"], env);
      expect(flag.code, flag.stderr).toBe(2);
      expect(JSON.parse(flag.stderr.trim()).error).toMatchObject({
        code: "INVALID_CONFIG",
        message: expect.stringMatching(/^--prefix: invalid resource prefix "a b"/),
      });
      const variable = await runArbiter(args, { ...env, ARBITER_PREFIX: "a.b" });
      expect(variable.code, variable.stderr).toBe(2);
      expect(variable.stderr).toMatch(/^arbiter: ARBITER_PREFIX: invalid resource prefix "a\.b"/);
    },
  );
});
