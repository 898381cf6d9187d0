import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { generateKey } from "@arbiter/trust";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type NatsServerProcess, startNatsServer } from "./harness/index.js";
import { runArbiter } from "./support/cli.js";

const EXAMPLE = new URL("../deploy/rules/example.yaml", import.meta.url).pathname;

// `workers remove` of a worker's seed, the value an operator holds as ARBITER_WORKER_SEED, said
// "worker key SN… is not enrolled; nothing was written" (printing the seed back) while the key of
// that seed stayed enrolled: an operator removing a leaked key was told there was nothing to remove.
describe("workers enroll|remove of something that is not a worker public key", () => {
  let server: NatsServerProcess;
  const home = mkdtempSync(join(tmpdir(), "arbiter-operator-worker-arg-"));
  let env: Record<string, string>;
  const worker = generateKey("N");

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
    const enrolled = await runArbiter(["workers", "enroll", worker.publicKey], env);
    expect(enrolled.code, enrolled.stderr).toBe(0);
  });

  afterAll(async () => {
    await server?.stop();
    rmSync(home, { recursive: true, force: true });
  });

  async function enrolledKeys(): Promise<string[]> {
    const listed = await runArbiter(["workers", "list", "--json"], env);
    expect(listed.code, listed.stderr).toBe(0);
    const { workers } = JSON.parse(listed.stdout) as { workers: { publicKey: string; enrolled: boolean }[] };
    return workers.filter((w) => w.enrolled).map((w) => w.publicKey);
  }

  it("names a seed given to remove as a seed, and the public key to pass, without printing the seed", async () => {
    for (const json of [[], ["--json"]]) {
      const removed = await runArbiter(["workers", "remove", worker.seed, ...json], env);
      expect(removed.code, removed.stderr).toBe(2);
      expect(removed.stderr).toContain(
        `the key given is a worker's seed (SN…), which is secret: pass its public key ${worker.publicKey}`,
      );
      expect(removed.stderr).not.toContain(worker.seed);
      expect(removed.stderr).not.toContain("not enrolled");
      expect(removed.stdout).toBe("");
    }
    expect(await enrolledKeys()).toEqual([worker.publicKey]);
  });

  it("names a seed given to enroll as a seed, without printing it", async () => {
    const other = generateKey("N");
    const enrolled = await runArbiter(["workers", "enroll", other.seed, "--json"], env);
    expect(enrolled.code, enrolled.stderr).toBe(2);
    expect(JSON.parse(enrolled.stderr.trim()).error).toMatchObject({ code: "INVALID_KEY" });
    expect(enrolled.stderr).toContain(`pass its public key ${other.publicKey}`);
    expect(enrolled.stderr).not.toContain(other.seed);
  });

  it("refuses to remove what is no worker key at all as such, not as a key that is not enrolled", async () => {
    for (const bad of ["NBAD", generateKey("O").publicKey, `${worker.publicKey.slice(0, 55)}A`]) {
      const removed = await runArbiter(["workers", "remove", bad], env);
      expect(removed.code, `${bad}: ${removed.stderr}`).toBe(2);
      expect(removed.stderr).toContain(`${JSON.stringify(bad)} is not a worker public key`);
      expect(removed.stderr).not.toContain("not enrolled");
    }
    expect(await enrolledKeys()).toEqual([worker.publicKey]);
  });
});
