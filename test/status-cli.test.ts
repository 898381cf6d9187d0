import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { generateKey } from "@arbiter/trust";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type NatsServerProcess, startNatsServer, until } from "./harness/index.js";
import { configuredWorkerEnv } from "./support/arbiter.js";
import { runArbiter, spawnArbiter } from "./support/cli.js";

const EXAMPLE = new URL("../deploy/rules/example.yaml", import.meta.url).pathname;

interface Status {
  server: string;
  revision: number;
  healthy: boolean;
  workers: {
    id: string;
    state: string;
    revision: number;
    enrolled: boolean | null;
    changesPerHost: boolean;
    changesTopic: string | null;
    changesSharedFallback: number;
    problem: string | null;
  }[];
  changes: string | null;
  changesProblem: string | null;
}

describe("arbiter status", () => {
  let server: NatsServerProcess;
  const admin = generateKey("O");
  let env: Record<string, string>;

  beforeAll(async () => {
    server = await startNatsServer();
    env = {
      NATS_URL: server.url,
      ARBITER_ADMIN_SEED: admin.seed,
      ARBITER_ADMIN_KEYS: admin.publicKey,
      ARBITER_HOME: "/nonexistent-arbiter-home",
    };
    const applied = await runArbiter(["rules", "apply", EXAMPLE], env);
    expect(applied.code, applied.stderr).toBe(0);
  });

  afterAll(async () => {
    await server?.stop();
  });

  /** `arbiter status --json` once every worker in `ids` answers (a worker answers once it is started). */
  async function statusWith(ids: string[]): Promise<{ code: number | null; status: Status }> {
    return until(
      async () => {
        const result = await runArbiter(["status", "--json"], env);
        const status = JSON.parse(result.stdout) as Status;
        const seen = status.workers.map((w) => w.id);
        return ids.every((id) => seen.includes(id)) && seen.length === ids.length
          ? { code: result.code, status }
          : undefined;
      },
      { name: `status naming ${ids.join(", ") || "no worker"}`, timeout: 30_000 },
    );
  }

  it("exits 1 saying that nothing answers hosts when no worker runs", async () => {
    const { code, status } = await statusWith([]);
    expect(code).toBe(1);
    expect(status).toMatchObject({ server: server.url, revision: 2, healthy: false, workers: [] });
    const human = await runArbiter(["status"], env);
    expect(human.stdout).toMatch(/no worker answered: nothing answers hosts' policy requests/);
  });

  it("lists a ready worker at the latest revision and exits 0; an unenrolled one makes it exit 1, named", async () => {
    const workerEnv = { ...env, ARBITER_LOG_LEVEL: "warn" };
    await using ready = spawnArbiter(["worker", "--name", "w-ready"], {
      ...workerEnv,
      ...configuredWorkerEnv(),
    });
    const healthy = await statusWith(["w-ready"]);
    expect(healthy.code).toBe(0);
    expect(healthy.status.healthy).toBe(true);
    expect(healthy.status.workers[0]).toMatchObject({
      state: "ready",
      revision: 2,
      enrolled: true,
      problem: null,
    });

    await using unenrolled = spawnArbiter(
      ["worker", "--name", "w-unenrolled", "--allow-unenrolled"],
      workerEnv,
    );
    const mixed = await statusWith(["w-ready", "w-unenrolled"]);
    expect(mixed.code).toBe(1);
    expect(mixed.status.healthy).toBe(false);
    const bad = mixed.status.workers.find((w) => w.id === "w-unenrolled");
    expect(bad?.problem).toMatch(/enroll/);
    const human = await runArbiter(["status"], env);
    expect(human.code).toBe(1);
    expect(human.stdout).toMatch(/^rules stream at revision 2 \(/);
    expect(human.stdout).toMatch(/\nw-unenrolled +\S+ +2 +shared +N[A-Z0-9]{55} +\S/);
    expect(ready.child.exitCode).toBeNull();
    expect(unenrolled.child.exitCode).toBeNull();
  });

  it("shows where each worker publishes overrides, says plainly when they disagree, and rules apply --wait does not call that enforced", async () => {
    const workerEnv = { ...env, ARBITER_LOG_LEVEL: "warn" };
    await using perHost = spawnArbiter(["worker", "--name", "w-per-host", "--changes-per-host"], {
      ...workerEnv,
      ...configuredWorkerEnv(),
    });
    const agreed = await statusWith(["w-per-host"]);
    expect(agreed.code).toBe(0);
    expect(agreed.status).toMatchObject({ healthy: true, changes: "per-host", changesProblem: null });
    expect(agreed.status.workers[0]).toMatchObject({
      changesPerHost: true,
      changesTopic: "wasmcloud.policy.changes",
      changesSharedFallback: 0,
    });
    expect((await runArbiter(["status"], env)).stdout).toMatch(/\nw-per-host +ready +2 +per-host +N/);

    // The flag wins over the environment.
    await using shared = spawnArbiter(["worker", "--name", "w-shared", "--no-changes-per-host"], {
      ...workerEnv,
      ...configuredWorkerEnv(),
      ARBITER_CHANGES_PER_HOST: "true",
    });
    const mixed = await statusWith(["w-per-host", "w-shared"]);
    expect(mixed.code).toBe(1);
    expect(mixed.status).toMatchObject({ healthy: false, changes: "mixed" });
    // Each worker is fine on its own: the problem is the pair.
    expect(mixed.status.workers.map((w) => w.problem)).toEqual([null, null]);
    expect(mixed.status.changesProblem).toMatch(
      /w-per-host on wasmcloud\.policy\.changes\.<host key>; w-shared on wasmcloud\.policy\.changes\)/,
    );
    const human = await runArbiter(["status"], env);
    expect(human.code).toBe(1);
    expect(human.stdout).toMatch(/\nthe workers disagree on where overrides go \(/);

    // Every worker serves the change and its overrides are out, but a host hears only some of them.
    const rules = join(mkdtempSync(join(tmpdir(), "arbiter-status-")), "allow.yaml");
    writeFileSync(rules, "version: 1\ndefault: allow\nrules: []\n");
    const applied = await runArbiter(["rules", "apply", rules, "--wait", "--wait-timeout", "20s"], env);
    expect(applied.code, applied.stderr).toBe(5);
    expect(applied.stderr).toMatch(
      /served by every worker .* but not enforced on every host: the workers disagree/,
    );
    await shared[Symbol.asyncDispose]();

    // Per host both, but under different changes topics: a disagreement too.
    await using elsewhere = spawnArbiter(
      ["worker", "--name", "w-elsewhere", "--changes-per-host", "--changes-topic", "other.changes"],
      { ...workerEnv, ...configuredWorkerEnv() },
    );
    const apart = await statusWith(["w-elsewhere", "w-per-host"]);
    expect(apart.code).toBe(1);
    expect(apart.status.changes).toBe("mixed");
    expect(apart.status.changesProblem).toMatch(/w-elsewhere on other\.changes\.<host key>/);
    expect(perHost.child.exitCode).toBeNull();
    expect(elsewhere.child.exitCode).toBeNull();
  });
});
