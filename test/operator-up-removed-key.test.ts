import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { until } from "./harness/index.js";
import { type RunningArbiter, runArbiter, spawnArbiter } from "./support/cli.js";

async function started(up: RunningArbiter): Promise<void> {
  await until(
    () =>
      up.stdout().includes("Ctrl-C stops everything") ||
      (up.child.exitCode !== null && `exited: ${up.stderr()}`),
    { name: "arbiter up ready", timeout: 40_000 },
  );
}

// `workers remove` of the key of one of up's own workers (its seed leaked, say) was undone by the
// next `arbiter up`, which enrolled the same key again without a word: the leaked seed signed
// decisions that verify once more.
describe("arbiter up after the key of one of its workers was removed", () => {
  const home = mkdtempSync(join(tmpdir(), "arbiter-operator-removed-key-"));
  const env = {
    ARBITER_HOME: home,
    ARBITER_LOG_LEVEL: "warn",
    ARBITER_LOG_FORMAT: "json",
    NATS_URL: "",
    ARBITER_ADMIN_SEED: "",
  };

  afterAll(() => rmSync(home, { recursive: true, force: true }));

  it("does not enroll the removed key again: it gives that worker a new key and says so", async () => {
    let removedKey: string;
    {
      await using up = spawnArbiter(["up", "--port", "0", "--workers", "1"], env);
      await started(up);
      const status = await runArbiter(["status", "--json"], env);
      expect(status.code, status.stderr).toBe(0);
      removedKey = (JSON.parse(status.stdout) as { workers: { publicKey: string }[] }).workers[0]!.publicKey;
      const removed = await runArbiter(["workers", "remove", removedKey, "--reason", "seed leaked"], env);
      expect(removed.code, removed.stderr).toBe(0);
      expect(await up.stop()).toBe(0);
    }
    const oldSeed = readFileSync(join(home, "workers", "local-1.seed"), "utf8");

    await using again = spawnArbiter(["up", "--port", "0", "--workers", "1"], env);
    await started(again);
    const listed = await runArbiter(["workers", "list", "--json"], env);
    expect(listed.code, listed.stderr).toBe(0);
    const workers = (
      JSON.parse(listed.stdout) as { workers: { publicKey: string; enrolled: boolean; name?: string }[] }
    ).workers;
    expect(workers.filter((w) => w.publicKey === removedKey).every((w) => !w.enrolled)).toBe(true);
    const enrolled = workers.filter((w) => w.enrolled);
    expect(enrolled).toHaveLength(1);
    expect(enrolled[0]).toMatchObject({ name: "local-1" });
    const newKey = enrolled[0]!.publicKey;
    expect(newKey).not.toBe(removedKey);
    expect(readFileSync(join(home, "workers", "local-1.seed"), "utf8")).not.toBe(oldSeed);

    const status = await runArbiter(["status", "--json"], env);
    expect(status.code, status.stderr).toBe(0);
    expect(JSON.parse(status.stdout).workers).toMatchObject([
      { id: "local-1", publicKey: newKey, state: "ready" },
    ]);
    const warning = again
      .stderr()
      .split("\n")
      .find((line) => line.includes(removedKey));
    expect(warning, again.stderr()).toBeDefined();
    expect(JSON.parse(warning!).msg).toMatch(
      new RegExp(
        `^local-1's key ${removedKey} was removed at revision \\d+: it is not enrolled again; local-1 has a new key, ${newKey}, enrolled in its place \\(seed in .*local-1\\.seed\\)$`,
      ),
    );
    expect(await again.stop()).toBe(0);
  }, 120_000);
});
