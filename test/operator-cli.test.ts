import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { generateKey } from "@arbiter/trust";
import { createWorker } from "@arbiter/worker";
import { jetstream } from "@nats-io/jetstream";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectTo, type NatsServerProcess, startNatsServer, until } from "./harness/index.js";
import { configuredWorkerKey } from "./support/arbiter.js";
import { runArbiter, spawnArbiter } from "./support/cli.js";
import { fixtureBytes } from "./support/fixtures.js";

const ALLOW_ALL = "version: 1\ndefault: allow\nrules: []\n";

/**
 * Runs a command that should exit on its own (a worker refusing its settings) and returns how it
 * exited, or a null code when it was still running at the deadline; it is then stopped by pid.
 */
async function runToExit(args: string[], env: Record<string, string>) {
  await using running = spawnArbiter(args, env);
  const exited = await until(() => running.child.exitCode !== null && running.stderr().includes("\n"), {
    name: `arbiter ${args.join(" ")} to exit with its message`,
    timeout: 20_000,
  }).catch(() => false);
  return { code: exited === true ? running.child.exitCode : null, stderr: running.stderr() };
}

describe("the CLI tried by a new operator: wrong keys, wrong flags, wrong servers", () => {
  let server: NatsServerProcess;
  let bare: NatsServerProcess;
  let home: string;
  let rulesFile: string;
  let env: Record<string, string>;
  const adminKey = generateKey("O");

  beforeAll(async () => {
    [server, bare] = await Promise.all([startNatsServer(), startNatsServer({ jetstream: false })]);
    home = mkdtempSync(join(tmpdir(), "arbiter-operator-"));
    rulesFile = join(home, "allow-all.yaml");
    writeFileSync(rulesFile, ALLOW_ALL);
    // No worker runs, no admin keys are configured and ARBITER_HOME holds no local key.
    env = {
      NATS_URL: server.url,
      ARBITER_ADMIN_SEED: "",
      ARBITER_ADMIN_KEYS: "",
      ARBITER_HOME: join(home, "no-up-here"),
      ARBITER_LOG_LEVEL: "warn",
    };
    const applied = await runArbiter(["rules", "apply", rulesFile], {
      ...env,
      ARBITER_ADMIN_SEED: adminKey.seed,
    });
    expect(applied.code, applied.stderr).toBe(0);
  });

  afterAll(async () => {
    await Promise.all([server?.stop(), bare?.stop()]);
    rmSync(home, { recursive: true, force: true });
  });

  it("rules show and history do not claim workers rejected an event when no worker answered and no key is known", async () => {
    for (const args of [
      ["rules", "show"],
      ["rules", "history"],
    ]) {
      const result = await runArbiter(args, env);
      expect(result.stdout, args.join(" ")).not.toMatch(/REJECTED/);
      expect(result.code, `${args.join(" ")}: ${result.stderr}`).toBe(2);
      expect(result.stderr).toMatch(
        /cannot tell which rule events the workers apply: no worker answered .* and no admin key is configured/,
      );
      expect(result.stderr).toContain(server.url);
    }
    const known = await runArbiter(["rules", "show", "--json"], {
      ...env,
      ARBITER_ADMIN_KEYS: adminKey.publicKey,
    });
    expect(known.code, known.stderr).toBe(0);
    expect(JSON.parse(known.stdout)).toMatchObject({
      keysFrom: "configured",
      latestRejected: null,
      document: { default: "allow" },
    });
  });

  it("read-only commands do not offer --replicas, which only creating streams uses", async () => {
    for (const args of [
      ["rules", "show"],
      ["rules", "history"],
    ]) {
      const help = await runArbiter([...args, "--help"], env);
      expect(help.code).toBe(0);
      expect(help.stdout, args.join(" ")).not.toContain("--replicas");
    }
    const apply = await runArbiter(["rules", "apply", "--help"], env);
    expect(apply.stdout).toContain("--replicas");
  });

  it("rules apply --replicas 3 on one server names the flag (or ARBITER_REPLICAS) it cannot use", async () => {
    const fresh = { ...env, ARBITER_ADMIN_SEED: adminKey.seed, ARBITER_PREFIX: "fresh" };
    const flag = await runArbiter(["rules", "apply", rulesFile, "--replicas", "3"], fresh);
    expect(flag.code, flag.stderr).toBe(2);
    expect(flag.stderr).toMatch(/^arbiter: --replicas 3: the NATS servers cannot hold 3 replicas/);
    expect(flag.stderr).toContain("use 1 for a single server");
    const variable = await runArbiter(["rules", "apply", rulesFile], { ...fresh, ARBITER_REPLICAS: "3" });
    expect(variable.code, variable.stderr).toBe(2);
    expect(variable.stderr).toMatch(/^arbiter: ARBITER_REPLICAS 3: /);
  });

  it("decisions list and tail refuse a --host that is not a whole host key instead of finding nothing", async () => {
    const host = generateKey("N").publicKey;
    for (const sub of ["list", "tail"]) {
      for (const value of [host.slice(0, 8), `${host}X`, generateKey("O").publicKey]) {
        const result = await runArbiter(["decisions", sub, "--host", value], env);
        expect(result.code, `decisions ${sub} --host ${value}: ${result.stderr}`).toBe(2);
        expect(result.stderr).toMatch(/^arbiter: --host ".*": expected a host public key in full/);
      }
    }
    const whole = await runArbiter(["decisions", "list", "--host", host], env);
    expect(whole.code, whole.stderr).toBe(0);
    expect(whole.stdout).toBe("no decisions\n");
  });

  it("a server without JetStream is named as such, not as one where `arbiter up` or a worker would help", async () => {
    const noJs = { ...env, NATS_URL: bare.url };
    for (const args of [
      ["rules", "show"],
      ["decisions", "list"],
      ["decisions", "tail"],
    ]) {
      const result = await runArbiter(args, noJs);
      expect(result.code, `${args.join(" ")}: ${result.stderr}`).toBe(4);
      expect(result.stderr).toContain(`NATS server ${bare.url} has no JetStream`);
      expect(result.stderr).not.toMatch(/start a worker/);
    }
    const apply = await runArbiter(["rules", "apply", rulesFile], {
      ...noJs,
      ARBITER_ADMIN_SEED: adminKey.seed,
    });
    expect(apply.code, apply.stderr).toBe(4);
    expect(apply.stderr).toContain(bare.url);
  });

  it("arbiter worker refuses a policy or changes topic it cannot use, naming it, before it connects", async () => {
    const worker = { ...env, ARBITER_ADMIN_KEYS: adminKey.publicKey, NATS_URL: "nats://127.0.0.1:1" };
    for (const [args, named] of [
      [["--policy-topic", "a b"], "--policy-topic (WASMCLOUD_POLICY_TOPIC)"],
      [["--policy-topic", "wasmcloud.>"], "--policy-topic (WASMCLOUD_POLICY_TOPIC)"],
      [["--changes-topic", "changes..x"], "--changes-topic (WASMCLOUD_POLICY_CHANGES_TOPIC)"],
      [["--changes-topic", "wasmcloud.policy"], "--changes-topic (WASMCLOUD_POLICY_CHANGES_TOPIC)"],
    ] as const) {
      // A worker that takes the setting would keep trying to reach NATS.
      const result = await runToExit(["worker", ...args], worker);
      expect(result.code, `${args.join(" ")}: ${result.stderr}`).toBe(2);
      expect(result.stderr).toMatch(/^arbiter: invalid worker configuration: /m);
      expect(result.stderr).toContain(`${named}: ${JSON.stringify(args[1])}: `);
      expect(result.stderr).not.toMatch(/cannot reach NATS/);
    }
  });

  it("arbiter up with a bad ARBITER_ADMIN_SEED names it and starts no nats-server", async () => {
    const upHome = join(home, "up-bad-seed");
    for (const seed of ["SOAFOO", generateKey("N").seed]) {
      const result = await runArbiter(["up", "--port", "0", "--workers", "1"], {
        ...env,
        ARBITER_HOME: upHome,
        ARBITER_ADMIN_SEED: seed,
      });
      expect(result.code, result.stderr).toBe(2);
      expect(result.stderr).toMatch(/^arbiter: ARBITER_ADMIN_SEED: /m);
      expect(existsSync(join(upHome, "nats"))).toBe(false);
      expect(existsSync(join(upHome, "nats-server.pid"))).toBe(false);
    }
  });

  it("arbiter up --port on a port in use names the flag, instead of dumping the nats-server log", async () => {
    const result = await runArbiter(["up", "--port", String(server.port), "--workers", "1"], {
      ...env,
      ARBITER_HOME: join(home, "up-port-taken"),
    });
    expect(result.code, result.stderr).toBe(2);
    expect(result.stderr).toBe(
      `arbiter: --port ${server.port}: the port is in use on 127.0.0.1; pass another, or --port 0 for a free one\n`,
    );
  });

  it("rules show --revision of an earlier revision says it is not the latest, so it is not read as today's rules", async () => {
    const asAdmin = { ...env, ARBITER_ADMIN_SEED: adminKey.seed, ARBITER_ADMIN_KEYS: adminKey.publicKey };
    const denyAll = join(home, "deny-all.yaml");
    writeFileSync(denyAll, "version: 1\ndefault: deny\nrules: []\n");
    const applied = await runArbiter(["rules", "apply", denyAll, "--json"], asAdmin);
    expect(applied.code, applied.stderr).toBe(0);
    const latest = (JSON.parse(applied.stdout) as { revision: number }).revision;
    const past = await runArbiter(["rules", "show", "--revision", "2"], asAdmin);
    expect(past.code, past.stderr).toBe(0);
    expect(past.stdout).toMatch(
      new RegExp(`^# revision 2 \\(the latest is ${latest}\\): the rules of revision 2 were in force\n`),
    );
    const none = await runArbiter(["rules", "show", "--revision", "0"], asAdmin);
    expect(none.stdout).toBe(
      `# revision 0 (the latest is ${latest}): no rules were in force (every request was denied)\n`,
    );
    const now = await runArbiter(["rules", "show"], asAdmin);
    expect(now.stdout).toMatch(
      new RegExp(`^# revision ${latest}: the rules of revision ${latest} are in force\n`),
    );
  });

  it("a bad flag value or condition is named (exit 2) before a missing admin key, an unreachable NATS or a started one", async () => {
    const nowhere = { ...env, NATS_URL: "nats://127.0.0.1:1" };
    const badCondition = join(home, "bad-condition.yaml");
    writeFileSync(
      badCondition,
      "version: 1\ndefault: deny\nrules:\n  - id: oops\n    effect: allow\n    when: kind ==\n",
    );
    const cases: [string[], RegExp][] = [
      [["rules", "apply", rulesFile, "--decisions-max-age", "5x"], /--decisions-max-age "5x"/],
      [["rules", "apply", rulesFile, "--decisions-max-bytes", "10Q"], /--decisions-max-bytes "10Q"/],
      [["rules", "rollback", "--to", "2", "--decisions-max-age", "soon"], /--decisions-max-age "soon"/],
      [
        ["workers", "enroll", generateKey("N").publicKey, "--decisions-max-age", "5x"],
        /--decisions-max-age "5x"/,
      ],
      [["rules", "apply", rulesFile, "--wait", "--wait-timeout", "abc"], /--wait-timeout "abc"/],
      [["rules", "apply", badCondition], /rule "oops": when, column \d+: syntax error/],
      [["up", "--rules", badCondition, "--port", "0"], /rule "oops": when, column \d+: syntax error/],
    ];
    for (const [[args, message], i] of cases.map((c, i) => [c, i] as const)) {
      // With no admin key at all, and (once) with one, when the next thing to fail is connecting.
      for (const seed of i === 0 ? ["", adminKey.seed] : [""]) {
        const result = await runArbiter(args, { ...nowhere, ARBITER_ADMIN_SEED: seed });
        expect(result.code, `${args.join(" ")}: ${result.stderr}`).toBe(2);
        expect(result.stderr).toMatch(message);
      }
    }
    // `up` refused the rules before it started a nats-server, which would have made its data folder.
    expect(existsSync(join(env["ARBITER_HOME"] ?? "", "nats"))).toBe(false);
  });

  it("credentials NATS refuses are named as such (exit 2), not as a NATS to start; a worker exits at once", async () => {
    await using guarded = await startNatsServer({
      extraConfig: 'authorization { user: "arbiter", password: "right" }\n',
    });
    const cases: [Record<string, string>, string, string[]][] = [
      [{}, "a connection without credentials", ["rules", "show"]],
      [
        { NATS_USER: "arbiter", NATS_PASSWORD: "wrong" },
        'NATS_USER "arbiter" and its NATS_PASSWORD',
        ["decisions", "list"],
      ],
      [
        { NATS_USER: "arbiter", NATS_PASSWORD: "wrong" },
        'NATS_USER "arbiter" and its NATS_PASSWORD',
        ["worker"],
      ],
    ];
    for (const [credentials, described, args] of cases) {
      const result = await runToExit(args, { ...env, ...credentials, NATS_URL: guarded.url });
      expect(result.code, `${args.join(" ")}: ${result.stderr}`).toBe(2);
      expect(result.stderr).toContain(
        `arbiter: NATS at ${guarded.url} refused ${described}: Authorization Violation`,
      );
      expect(result.stderr).not.toContain("wrong");
      expect(result.stderr).not.toMatch(/Start one with `arbiter up`/);
    }
  });

  it("arbiter up with ARBITER_HOME on a file exits 2 naming ARBITER_HOME, not 1 with a bare EEXIST", async () => {
    const result = await runArbiter(["up", "--port", "0", "--workers", "1"], {
      ...env,
      ARBITER_HOME: rulesFile,
    });
    expect(result.code, result.stderr).toBe(2);
    expect(result.stderr).toMatch(
      new RegExp(`^arbiter: ARBITER_HOME ${rulesFile} cannot hold Arbiter's data: `),
    );
  });

  it("decisions list says how many stored entries it skipped as not sealed decision records", async () => {
    const nc = await connectTo(server.url);
    try {
      await jetstream(nc).publish(
        "arbiter.decisions.recorded",
        '{"permitted":true,"message":"not from a worker"}',
      );
    } finally {
      await nc.close();
    }
    const listed = await runArbiter(["decisions", "list"], env);
    expect(listed.code, listed.stderr).toBe(0);
    expect(listed.stdout).toBe("no decisions\n");
    expect(listed.stderr).toBe(
      "arbiter: skipped 1 stored entry of the decision log that is not a sealed decision record\n",
    );
  });

  it("rules history has a header row over aligned columns", async () => {
    const history = await runArbiter(["rules", "history"], {
      ...env,
      ARBITER_ADMIN_KEYS: adminKey.publicKey,
    });
    expect(history.code, history.stderr).toBe(0);
    const [header, first] = history.stdout.split("\n");
    expect(header).toMatch(/^REVISION {2}STATUS {4}TYPE {16}AT {24}ACTOR {53}HASH {10}PREV {10}REASON$/);
    expect(first).toMatch(
      /^ {7}1 {2}applied {3}deployment\.created {2}\S{24} {2}O[A-Z2-7]{55} {2}[0-9a-f]{12} {2}- {13}a new deployment$/,
    );
    expect(header?.indexOf("ACTOR")).toBe(first?.indexOf(adminKey.publicKey));
  });

  it("decisions list lines up the columns after SUBJECT under their headings", async () => {
    const nc = await connectTo(server.url);
    const worker = createWorker({
      nc,
      logger: pino({ level: "silent" }),
      config: { adminKeys: [adminKey.publicKey], ...configuredWorkerKey() },
    });
    try {
      await worker.start();
      for (const name of ["start-component", "start-provider"])
        await nc.request("wasmcloud.policy", fixtureBytes(name), { timeout: 5000 });
    } finally {
      await worker.stop();
      await nc.close();
    }
    const listed = await runArbiter(["decisions", "list"], env);
    expect(listed.code, listed.stderr).toBe(0);
    const [header, ...rows] = listed.stdout.trimEnd().split("\n");
    expect(rows).toHaveLength(2);
    for (const column of ["REVISION", "MESSAGE"]) {
      const at = header?.indexOf(column) ?? -1;
      for (const line of rows) {
        expect(line.slice(at - 2, at), `${column} in ${line}`).toBe("  ");
        expect(line.charAt(at), `${column} in ${line}`).not.toBe(" ");
      }
    }
    for (const line of rows) expect(line.slice(header?.indexOf("REVISION")).split(" ")[0]).toMatch(/^r\d+$/);
  });
});
