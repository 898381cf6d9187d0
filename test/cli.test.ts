import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createHostPolicyClient } from "@arbiter/host";
import { PolicyRequestV1 } from "@arbiter/protocol";
import { createSigner, generateKey } from "@arbiter/trust";
import type { NatsConnection } from "@nats-io/nats-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectTo, type NatsServerProcess, startNatsServer, until } from "./harness/index.js";
import { configuredWorkerEnv } from "./support/arbiter.js";
import { type RunningArbiter, runArbiter, spawnArbiter } from "./support/cli.js";
import { FIXTURES, fixtureJson } from "./support/fixtures.js";

const EXAMPLE = new URL("../deploy/rules/example.yaml", import.meta.url).pathname;

/** Sends a fixture through a fresh reference host (so nothing is answered from a host cache). */
async function askAsHost(nc: NatsConnection, name: string, changeId?: string) {
  const request = PolicyRequestV1.parse(fixtureJson(name));
  const host = createHostPolicyClient({
    nc,
    host: request.host,
    changesTopic: null,
    timeoutMs: 5000,
    strictRequestId: true,
  });
  switch (request.kind) {
    case "startComponent":
      return host.evaluateStartComponent({
        ...request.request,
        componentId: changeId ?? request.request.componentId,
      });
    case "startProvider":
      return host.evaluateStartProvider(request.request);
    case "performInvocation":
      return host.evaluatePerformInvocation(request.request);
    case "unknown":
      throw new Error("no unknown fixtures");
  }
}

describe("the arbiter command against a real server", () => {
  let server: NatsServerProcess;
  let nc: NatsConnection;
  let worker: RunningArbiter;
  let home: string;
  let env: Record<string, string>;
  const admin = generateKey("O");

  beforeAll(async () => {
    server = await startNatsServer();
    nc = await connectTo(server.url);
    home = mkdtempSync(join(tmpdir(), "arbiter-cli-"));
    env = {
      NATS_URL: server.url,
      ARBITER_ADMIN_SEED: admin.seed,
      ARBITER_ADMIN_KEYS: admin.publicKey,
      ARBITER_HOME: home,
      ARBITER_LOG_LEVEL: "warn",
    };
  });

  afterAll(async () => {
    await worker?.stop();
    await nc?.close();
    await server?.stop();
    rmSync(home, { recursive: true, force: true });
  });

  it("rules apply prints the new revision", async () => {
    const applied = await runArbiter(["rules", "apply", EXAMPLE, "--json"], env);
    expect(applied.code, applied.stderr).toBe(0);
    expect(JSON.parse(applied.stdout)).toMatchObject({
      revision: 2,
      deployment: expect.stringMatching(/^[A-Z2-7]{26}$/),
    });
  });

  it("a worker started by `arbiter worker` gives the fixtures their documented answers", async () => {
    worker = spawnArbiter(["worker", "--name", "cli-w1", "--json"], { ...env, ...configuredWorkerEnv() });
    const ready = await until(
      () => worker.stdout().trim() || (worker.child.exitCode !== null && worker.stderr()),
      {
        name: "the worker's ready line",
        timeout: 20_000,
      },
    );
    expect(JSON.parse(ready)).toMatchObject({ worker: "cli-w1", revision: 2, status: "ready" });
    for (const fixture of FIXTURES) {
      const answer = await askAsHost(nc, fixture.name);
      // strictRequestId: an answer that does not echo the request id comes back as a failure.
      expect(answer.failure, fixture.name).toBeUndefined();
      expect(answer.permitted, fixture.name).toBe(fixture.permitted);
    }
  });

  it("echoes the host's own request id", async () => {
    const bytes = new TextEncoder().encode(JSON.stringify(fixtureJson("start-provider")));
    const reply = await nc.request("wasmcloud.policy", bytes, { timeout: 5000 });
    expect(JSON.parse(reply.string())).toEqual({
      requestId: "01945242-b574-5094-790d-76d823e0c948",
      permitted: true,
      message: "signed by wasmCloud",
    });
  });

  it("rejects a stale --expect-revision with a conflict and a non-zero exit", async () => {
    const stale = await runArbiter(["rules", "apply", EXAMPLE, "--expect-revision", "0"], env);
    expect(stale.code).toBe(3);
    expect(stale.stderr).toMatch(/revision 2, not 0/);
    const json = await runArbiter(["rules", "apply", EXAMPLE, "--expect-revision", "0", "--json"], env);
    expect(JSON.parse(json.stderr)).toMatchObject({ error: { code: "RULE_CONFLICT" } });
  });

  it("serves changed rules without a restart, and rolls back", async () => {
    const permissive = join(home, "allow-all.yaml");
    writeFileSync(permissive, "version: 1\ndefault: allow\nrules: []\n");
    const applied = await runArbiter(["rules", "apply", permissive, "--expect-revision", "2", "--json"], env);
    expect(applied.code, applied.stderr).toBe(0);
    expect(JSON.parse(applied.stdout).revision).toBe(3);
    await until(async () => (await askAsHost(nc, "start-component", "changed-1")).permitted, {
      name: "the worker permitting under revision 3",
      timeout: 10_000,
    });

    const rollback = await runArbiter(["rules", "rollback", "--to", "2", "--json"], env);
    expect(rollback.code, rollback.stderr).toBe(0);
    expect(JSON.parse(rollback.stdout)).toMatchObject({ revision: 4, restored: 2 });
    await until(async () => !(await askAsHost(nc, "start-component", "changed-2")).permitted, {
      name: "the worker denying again under revision 4",
      timeout: 10_000,
    });

    const show = await runArbiter(["rules", "show", "--json"], env);
    const shown1 = await runArbiter(["rules", "show", "--revision", "2", "--json"], env);
    expect(JSON.parse(show.stdout).document).toEqual(JSON.parse(shown1.stdout).document);
    expect(JSON.parse(show.stdout)).toMatchObject({
      revision: 4,
      deployment: expect.stringMatching(/^[A-Z2-7]{26}$/),
    });
  });

  it("lists the revisions in rules history --json", async () => {
    const history = await runArbiter(["rules", "history", "--json"], env);
    expect(history.code, history.stderr).toBe(0);
    const entries = JSON.parse(history.stdout) as {
      revision: number;
      applied: boolean;
      type: string;
      reason: string | null;
      hash: string;
      prev: string | null;
      broken: string | null;
    }[];
    expect(entries.map((e) => e.revision)).toEqual([1, 2, 3, 4]);
    expect(entries.map((e) => e.type)).toEqual([
      "deployment.created",
      "ruleset.replaced",
      "ruleset.replaced",
      "ruleset.replaced",
    ]);
    expect(entries.every((e) => e.applied && e.broken === null)).toBe(true);
    expect(entries.map((e) => e.prev)).toEqual([null, ...entries.slice(0, 3).map((e) => e.hash)]);
    expect(entries[3]?.reason).toBe("rollback to revision 2");
  });

  it("explains invalid rules by rule and position, and changes nothing", async () => {
    const broken = join(home, "broken.yaml");
    writeFileSync(
      broken,
      'version: 1\ndefault: deny\nrules:\n  - id: oops\n    effect: allow\n    when: kind == = "x"\n',
    );
    const result = await runArbiter(["rules", "apply", broken], env);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/rule "oops"/);
    expect(result.stderr).toMatch(/column \d+/);
    const history = JSON.parse((await runArbiter(["rules", "history", "--json"], env)).stdout) as unknown[];
    expect(history).toHaveLength(4);
  });

  it("lists decisions with filters", async () => {
    const list = await runArbiter(["decisions", "list", "--kind", "startProvider", "--json"], env);
    expect(list.code, list.stderr).toBe(0);
    const decisions = JSON.parse(list.stdout) as { kind: string; worker: { id: string } }[];
    expect(decisions.length).toBeGreaterThan(0);
    expect(decisions.every((d) => d.kind === "startProvider" && d.worker.id === "cli-w1")).toBe(true);
  });

  it("decisions tail follows new decisions as JSON lines until Ctrl-C", async () => {
    await using tail = spawnArbiter(["decisions", "tail", "--kind", "startProvider", "--json"], env);
    // The tail starts at "now": keep asking until one of the answers shows up in it.
    const line = await until(
      async () => {
        await askAsHost(nc, "start-provider");
        return tail
          .stdout()
          .split("\n")
          .find((l) => l.startsWith("{"));
      },
      { name: "a decision in decisions tail", timeout: 20_000 },
    );
    expect(JSON.parse(line)).toMatchObject({
      kind: "startProvider",
      permitted: true,
      worker: { id: "cli-w1" },
    });
    expect(await tail.stop("SIGINT")).toBe(0);
  });

  it("stops a worker cleanly on SIGTERM", async () => {
    expect(await worker.stop("SIGTERM")).toBe(0);
  });

  it("says what is missing when no admin key is configured", async () => {
    const { ARBITER_ADMIN_SEED: _, ...noSeed } = env;
    const result = await runArbiter(["rules", "apply", EXAMPLE], noSeed);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toMatch(/no admin key: set ARBITER_ADMIN_SEED/);
    // Run from another folder, ARBITER_HOME is another folder: the message says where it looked.
    expect(result.stderr).toContain(`there is no local key in ${home}`);
  });

  it("keygen worker makes the worker seed a worker signs with, named as the worker reads it", async () => {
    const result = await runArbiter(["trust", "keygen", "worker", "--json"]);
    expect(result.code, result.stderr).toBe(0);
    const key = JSON.parse(result.stdout) as { kind: string; publicKey: string; seed: string };
    expect(key.kind).toBe("worker");
    expect(createSigner(key.seed, "N").publicKey).toBe(key.publicKey);
    const human = await runArbiter(["trust", "keygen", "worker"]);
    expect(human.stdout).toMatch(/ARBITER_WORKER_SEED/);
    expect(human.stdout).toMatch(/arbiter workers enroll/);
  });

  it("keygen makes keys that sign", async () => {
    const result = await runArbiter(["trust", "keygen", "admin", "--json"]);
    const key = JSON.parse(result.stdout) as { publicKey: string; seed: string };
    expect(createSigner(key.seed).publicKey).toBe(key.publicKey);
  });
});
