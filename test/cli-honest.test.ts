import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createSigner, generateKey, verifySealedJson } from "@arbiter/trust";
import { createWorker, type Worker } from "@arbiter/worker";
import { jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectTo, type NatsServerProcess, startNatsServer, until } from "./harness/index.js";
import { configuredWorkerKey } from "./support/arbiter.js";
import { runArbiter } from "./support/cli.js";
import { fixtureBytes, fixtureJson } from "./support/fixtures.js";

const EXAMPLE = new URL("../deploy/rules/example.yaml", import.meta.url).pathname;

/** The names of the streams on the server, to prove a command created none. */
async function streamNames(nc: NatsConnection): Promise<string[]> {
  const jsm = await jetstreamManager(nc);
  const found: string[] = [];
  for await (const info of jsm.streams.list()) found.push(info.config.name);
  return found;
}

describe("every command is honest about what it did and where", () => {
  let server: NatsServerProcess;
  let nc: NatsConnection;
  let home: string;
  let env: Record<string, string>;
  const adminKey = generateKey("O");
  const otherKey = generateKey("O");
  const admin = createSigner(adminKey.seed);
  const other = createSigner(otherKey.seed);
  const workers: Worker[] = [];

  beforeAll(async () => {
    server = await startNatsServer();
    nc = await connectTo(server.url);
    home = mkdtempSync(join(tmpdir(), "arbiter-honest-"));
    env = {
      NATS_URL: server.url,
      ARBITER_ADMIN_SEED: adminKey.seed,
      ARBITER_ADMIN_KEYS: "",
      ARBITER_HOME: home,
      ARBITER_LOG_LEVEL: "warn",
    };
  });

  afterAll(async () => {
    for (const worker of workers) await worker.stop();
    await nc?.close();
    await server?.stop();
    rmSync(home, { recursive: true, force: true });
  });

  it("read-only commands create nothing and name the server that has no Arbiter streams", async () => {
    for (const args of [
      ["rules", "show"],
      ["rules", "history"],
      ["decisions", "list"],
      ["decisions", "tail"],
      ["revocations", "list"],
      ["revocations", "tail"],
      ["decisions", "export"],
      ["workers", "list"],
      ["status"],
      ["audit", "verify"],
      ["audit", "replay"],
      ["audit", "whatif", EXAMPLE],
    ]) {
      const result = await runArbiter(args, env);
      expect(result.code, `${args.join(" ")}: ${result.stderr}`).toBe(4);
      expect(result.stderr).toContain(server.url);
      expect(result.stderr).toMatch(
        /no Arbiter streams there \(the admin's first `arbiter rules apply` makes them, as does `arbiter up`\)/,
      );
    }
    const json = await runArbiter(["rules", "show", "--json"], env);
    expect(JSON.parse(json.stderr)).toMatchObject({ error: { code: "STORE_UNAVAILABLE" } });
    expect(await streamNames(nc)).toEqual([]);
  });

  it("decisions tail exits 4 like decisions list when NATS is unreachable, and so do revocations list and tail", async () => {
    const unreachable = { ...env, NATS_URL: "nats://127.0.0.1:1" };
    for (const [command, sub] of [
      ["decisions", "list"],
      ["decisions", "tail"],
      ["revocations", "list"],
      ["revocations", "tail"],
    ] as const) {
      const result = await runArbiter([command, sub], unreachable);
      expect(result.code, `${command} ${sub}: ${result.stderr}`).toBe(4);
      expect(result.stderr).toMatch(/cannot connect to NATS at nats:\/\/127\.0\.0\.1:1/);
    }
  });

  it("refuses an apply signed by a key outside ARBITER_ADMIN_KEYS and writes nothing", async () => {
    const refused = await runArbiter(["rules", "apply", EXAMPLE], {
      ...env,
      ARBITER_ADMIN_KEYS: other.publicKey,
    });
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain(admin.publicKey);
    expect(refused.stderr).toContain(other.publicKey);
    const json = await runArbiter(
      ["rules", "apply", EXAMPLE, "--json", "--admin-keys", other.publicKey],
      env,
    );
    expect(json.code).toBe(2);
    expect(JSON.parse(json.stderr)).toMatchObject({ error: { code: "ADMIN_KEY_NOT_ACCEPTED" } });
    expect(await streamNames(nc)).toEqual([]);
  });

  it("applies with no worker to ask, says so, and names the server in --json", async () => {
    const applied = await runArbiter(["rules", "apply", EXAMPLE, "--json", "-v"], env);
    expect(applied.code, applied.stderr).toBe(0);
    expect(JSON.parse(applied.stdout)).toMatchObject({ revision: 2, server: server.url, acceptedBy: [] });
    expect(applied.stderr).toContain(`using NATS server ${server.url}`);
    const text = await runArbiter(["rules", "apply", EXAMPLE, "--expect-revision", "2"], env);
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toMatch(/no worker was reachable to confirm/);
  });

  it("rules show prints the latest applied document and says when the latest event was rejected", async () => {
    // Signed by `other`, outside the keys given below; with no worker to ask, the CLI cannot tell.
    // Its writer accepts the admin key that signed the deployment's genesis event, to chain onto it.
    const permissive = join(home, "allow-all.yaml");
    writeFileSync(permissive, "version: 1\ndefault: allow\nrules: []\n");
    const applied = await runArbiter(["rules", "apply", permissive, "--json"], {
      ...env,
      ARBITER_ADMIN_SEED: otherKey.seed,
      ARBITER_ADMIN_KEYS: `${admin.publicKey},${other.publicKey}`,
    });
    expect(applied.code, applied.stderr).toBe(0);
    const asAdmin = { ...env, ARBITER_ADMIN_KEYS: admin.publicKey };
    const shown = await runArbiter(["rules", "show", "--json"], asAdmin);
    expect(shown.code, shown.stderr).toBe(0);
    expect(JSON.parse(shown.stdout)).toMatchObject({
      server: server.url,
      revision: 4,
      latestRevision: 4,
      documentRevision: 3,
      document: { default: "deny" },
      latestRejected: { revision: 4, reason: expect.stringContaining("not an accepted admin key") },
    });
    const text = await runArbiter(["rules", "show"], asAdmin);
    // No worker answered: the rejection is the configured keys' verdict, and says so.
    expect(text.stdout).toMatch(
      /# revision 4 was REJECTED under the configured admin keys \(no worker answered\): signed by O/,
    );
    expect(text.stdout).toMatch(
      /the rules of revision 3 are in force\ndefault: deny|the rules of revision 3 are in force\nversion: 1/,
    );
  });

  it("rollback outside the history says what the latest revision really is", async () => {
    for (const to of ["0", "99"]) {
      const result = await runArbiter(["rules", "rollback", "--to", to], env);
      expect(result.code).toBe(2);
      expect(result.stderr).toMatch(/the latest revision is 4/);
    }
  });

  it("prints every decision record as stored, each verifying on its own", async () => {
    const withError = join(home, "with-error.yaml");
    writeFileSync(
      withError,
      'version: 1\ndefault: allow\nrules:\n  - id: looks-up-a-missing-key\n    effect: deny\n    when: input.nope == "x"\n',
    );
    const worker = createWorker({
      nc,
      logger: pino({ level: "silent" }),
      config: { id: "honest-w2", adminKeys: [admin.publicKey, other.publicKey], ...configuredWorkerKey() },
    });
    await worker.start();
    workers.push(worker);
    const applied = await runArbiter(["rules", "apply", withError], {
      ...env,
      ARBITER_ADMIN_SEED: otherKey.seed,
      ARBITER_ADMIN_KEYS: `${admin.publicKey},${other.publicKey}`,
    });
    expect(applied.code, applied.stderr).toBe(0);
    await until(
      async () => {
        const reply = await nc.request("wasmcloud.policy", fixtureBytes("start-provider"), { timeout: 5000 });
        return (JSON.parse(reply.string()) as { permitted: boolean }).permitted;
      },
      { name: "the worker on the rules with an erroring rule", timeout: 15_000 },
    );

    const list = await runArbiter(["decisions", "list", "--json"], env);
    expect(list.code, list.stderr).toBe(0);
    const records = JSON.parse(list.stdout) as { worker: { publicKey: string } }[];
    expect(records.length).toBeGreaterThan(0);
    // Each element of the printed array is the stored text, byte for byte.
    const texts = list.stdout
      .trim()
      .slice(1, -1)
      .split(",\n")
      .map((t) => t.trim());
    expect(texts).toHaveLength(records.length);
    for (const [i, text] of texts.entries()) {
      expect(verifySealedJson(text, records[i]!.worker.publicKey), text).toBe(true);
    }

    const host = (fixtureJson("start-provider").host as { publicKey: string }).publicKey;
    const table = await runArbiter(["decisions", "list", "--host", host, "--limit", "1"], env);
    expect(table.code, table.stderr).toBe(0);
    const [header, row, detail] = table.stdout.split("\n");
    expect(header).toMatch(/^EVALUATED AT\s+ANSWER\s+CAUSE\s+KIND\s+HOST\s+SUBJECT\s+REVISION\s+MESSAGE$/);
    expect(row).toContain(host);
    expect(detail).toMatch(/rule error in "looks-up-a-missing-key"/);
  });

  it("parses integer flags strictly, naming the flag, with JSON usage errors under --json", async () => {
    const cases: [string[], RegExp][] = [
      [["decisions", "list", "--limit", "abc"], /--limit "abc"/],
      [["decisions", "list", "--limit", "0"], /--limit "0"/],
      [["rules", "show", "--revision", ""], /--revision ""/],
      [["rules", "apply", EXAMPLE, "--replicas", "2"], /--replicas "2": expected 1, 3 or 5/],
      [["rules", "apply", EXAMPLE, "--expect-revision", "1.5"], /--expect-revision "1.5"/],
      [["up", "--workers", "2x"], /--workers "2x"/],
      [["up", "--port", "4222.0"], /--port "4222.0"/],
    ];
    for (const [args, message] of cases) {
      const result = await runArbiter(args, env);
      expect(result.code, args.join(" ")).toBe(2);
      expect(result.stderr).toMatch(message);
      const json = await runArbiter([...args, "--json"], env);
      expect(JSON.parse(json.stderr)).toMatchObject({ error: { code: "INVALID_CONFIG" } });
    }
    const usage = await runArbiter(["decisions", "list", "--no-such-flag", "--json"], env);
    expect(usage.code).toBe(2);
    expect(JSON.parse(usage.stderr)).toEqual({
      error: { code: "INVALID_USAGE", message: "unknown option '--no-such-flag'" },
    });
    const missing = await runArbiter(["rules", "apply", "--json"], env);
    expect(missing.code).toBe(2);
    expect(JSON.parse(missing.stderr)).toMatchObject({ error: { code: "INVALID_USAGE" } });
  });

  it("refuses a bad ARBITER_LOG_LEVEL or ARBITER_LOG_FORMAT with exit 2", async () => {
    const level = await runArbiter(["rules", "show"], { ...env, ARBITER_LOG_LEVEL: "loud" });
    expect(level.code).toBe(2);
    expect(level.stderr).toMatch(/ARBITER_LOG_LEVEL "loud"/);
    const format = await runArbiter(["rules", "show"], { ...env, ARBITER_LOG_FORMAT: "xml" });
    expect(format.code).toBe(2);
    expect(format.stderr).toMatch(/ARBITER_LOG_FORMAT "xml": expected json or pretty/);
  });
});
