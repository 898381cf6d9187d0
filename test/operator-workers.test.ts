import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { generateKey } from "@arbiter/trust";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type NatsServerProcess, startNatsServer } from "./harness/index.js";
import { runArbiter } from "./support/cli.js";

const EXAMPLE = new URL("../deploy/rules/example.yaml", import.meta.url).pathname;

/** How many events the rules stream holds, by `rules history --json`. */
async function historyLength(env: Record<string, string>): Promise<number> {
  const history = await runArbiter(["rules", "history", "--json"], env);
  expect(history.code, history.stderr).toBe(0);
  return (JSON.parse(history.stdout) as unknown[]).length;
}

// Enrolling a key twice, or removing one that is not enrolled, wrote an event every worker skips
// ("is enrolled already", REJECTED in rules history) and printed "enrolled at revision N" (exit 0).
describe("workers enroll|remove of a key already in that state", () => {
  let server: NatsServerProcess;
  const home = mkdtempSync(join(tmpdir(), "arbiter-operator-workers-"));
  let env: Record<string, string>;
  const worker = generateKey("N").publicKey;

  beforeAll(async () => {
    server = await startNatsServer();
    env = {
      NATS_URL: server.url,
      ARBITER_HOME: join(home, "no-up-here"),
      ARBITER_ADMIN_SEED: generateKey("O").seed,
      ARBITER_LOG_LEVEL: "warn",
    };
    const applied = await runArbiter(["rules", "apply", EXAMPLE], env);
    expect(applied.code, applied.stderr).toBe(0);
  });

  afterAll(async () => {
    await server?.stop();
    rmSync(home, { recursive: true, force: true });
  });

  it("refuses to enroll an enrolled key again, saying since when, and writes nothing", async () => {
    const first = await runArbiter(["workers", "enroll", worker], env);
    expect(first.code, first.stderr).toBe(0);
    const before = await historyLength(env);
    const again = await runArbiter(["workers", "enroll", worker], env);
    expect(again.code, again.stdout).toBe(2);
    expect(again.stderr).toMatch(
      new RegExp(`worker key ${worker} is enrolled already \\(since revision \\d+\\); nothing was written`),
    );
    expect(again.stdout).toBe("");
    expect(await historyLength(env)).toBe(before);
  });

  it("refuses to remove a key that is not enrolled, and writes nothing", async () => {
    const stranger = generateKey("N").publicKey;
    const before = await historyLength(env);
    const never = await runArbiter(["workers", "remove", stranger, "--json"], env);
    expect(never.code, never.stdout).toBe(2);
    expect(never.stderr).toContain(`worker key ${stranger} is not enrolled; nothing was written`);
    const removed = await runArbiter(["workers", "remove", worker], env);
    expect(removed.code, removed.stderr).toBe(0);
    const twice = await runArbiter(["workers", "remove", worker], env);
    expect(twice.code, twice.stdout).toBe(2);
    expect(twice.stderr).toMatch(
      new RegExp(`worker key ${worker} is not enrolled \\(removed at revision \\d+\\); nothing was written`),
    );
    expect(await historyLength(env)).toBe(before + 1);
  });
});
