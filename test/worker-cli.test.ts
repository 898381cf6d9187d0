import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { generateKey } from "@arbiter/trust";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type NatsServerProcess, startNatsServer, until } from "./harness/index.js";
import { configuredWorkerEnv } from "./support/arbiter.js";
import { runArbiter, spawnArbiter } from "./support/cli.js";

// `arbiter worker` that cannot start exits at once, non-zero, naming the setting; one that cannot
// reach NATS yet says so on every attempt and keeps trying.

const EXAMPLE = new URL("../deploy/rules/example.yaml", import.meta.url).pathname;

describe("arbiter worker that cannot start", () => {
  let server: NatsServerProcess;
  let env: Record<string, string>;

  beforeAll(async () => {
    server = await startNatsServer();
    env = { NATS_URL: server.url, ARBITER_ADMIN_KEYS: generateKey("O").publicKey, ARBITER_LOG_LEVEL: "warn" };
  });

  afterAll(async () => {
    await server?.stop();
  });

  it("exits 2 naming ARBITER_WORKER_SEED for a seed of the wrong kind", async () => {
    const result = await runArbiter(["worker"], { ...env, ARBITER_WORKER_SEED: generateKey("O").seed });
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/ARBITER_WORKER_SEED/);
  });

  it("exits 2 naming --replicas when the server cannot hold that many replicas", async () => {
    const result = await runArbiter(["worker", "--replicas", "3", "--prefix", "replicas3"], env);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(
      /--replicas \(ARBITER_REPLICAS\) 3: .*(insufficient resources|not supported)/,
    );
  });

  it("exits 2 naming --prefix, --max-queued, --max-queued-bytes, --index-mirror-max-bytes, --max-payload, --inbox-prefix, --on-log-outage, --host-timeout and --lattices for bad values", async () => {
    const cases: Array<[string[], RegExp]> = [
      [["--prefix", "bad prefix!"], /--prefix/],
      [["--max-queued", "abc"], /--max-queued "abc"/],
      [["--max-queued-bytes", "1MB"], /--max-queued-bytes "1MB"/],
      [["--index-mirror-max-bytes", "0"], /--index-mirror-max-bytes \(ARBITER_INDEX_MIRROR_MAX_BYTES\) "0"/],
      [["--max-payload", "12x"], /--max-payload "12x"/],
      [["--inbox-prefix", "wasmcloud."], /--inbox-prefix.*wasmcloud\./],
      [["--on-log-outage", "loud"], /--on-log-outage.*loud/],
      [["--host-timeout", "70s"], /--host-timeout \(ARBITER_HOST_TIMEOUT\) "70s"/],
      [
        ["--lattices", "default,a.b"],
        /--lattices \(ARBITER_LATTICES\) entry 2: "a.b": expected a lattice name/,
      ],
      [["--inbox-prefix", "_INBOX.,bad prefix"], /--inbox-prefix \(ARBITER_INBOX_PREFIXES\) entry 2: /],
    ];
    for (const [args, message] of cases) {
      const result = await runArbiter(["worker", ...args], env);
      expect(result.code, args.join(" ")).toBe(2);
      expect(result.stderr, args.join(" ")).toMatch(message);
    }
  });

  it("exits 2 naming ARBITER_CHANGES_PER_HOST for a value that is not true, false, 1 or 0", async () => {
    const result = await runArbiter(["worker"], { ...env, ARBITER_CHANGES_PER_HOST: "yes" });
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/ARBITER_CHANGES_PER_HOST "yes": expected true, false, 1 or 0/);
  });

  it("starts with a custom inbox prefix and onLogOutage from the environment", async () => {
    await using worker = spawnArbiter(["worker", "--json", "--inbox-prefix", "myapp.replies.,_INBOX."], {
      ...env,
      ...configuredWorkerEnv(),
      ARBITER_ON_LOG_OUTAGE: "deny",
    });
    await until(() => worker.stdout().includes('"status"'), { name: "the worker ready", timeout: 20_000 });
    expect(JSON.parse(worker.stdout())).toMatchObject({ servers: [server.url] });
  });

  it("exits 2 with a key that is not enrolled, naming the key and how to enroll it", async () => {
    const key = generateKey("N");
    const given = await runArbiter(["worker"], { ...env, ARBITER_WORKER_SEED: key.seed });
    expect(given.code, given.stderr).toBe(2);
    expect(given.stderr).toContain(
      `this worker's key ${key.publicKey} is not enrolled in the deployment (the rules stream has no genesis event yet): enroll it with \`arbiter workers enroll ${key.publicKey}\``,
    );
    expect(given.stderr).toMatch(/--allow-unenrolled/);
    // A key generated for the run dies with it: the message does not ask to enroll that key, but to make one.
    const generated = await runArbiter(["worker"], env);
    expect(generated.code, generated.stderr).toBe(2);
    expect(generated.stderr).toMatch(
      /this worker has no key of its own \(ARBITER_WORKER_SEED\), and the one made for this run \(N[A-Z2-7]{55}\) is not enrolled/,
    );
    expect(generated.stderr).toMatch(
      /make a key with `arbiter trust keygen worker`, enroll its public key with `arbiter workers enroll N…`/,
    );
    expect(generated.stderr).not.toMatch(/arbiter workers enroll N[A-Z2-7]{55}/);
  });

  it("serves with an unenrolled key only when told to, saying so loudly", async () => {
    await using worker = spawnArbiter(["worker", "--json", "--allow-unenrolled"], {
      ...env,
      ARBITER_LOG_LEVEL: "warn",
    });
    await until(() => worker.stdout().includes('"status"'), { name: "the worker ready", timeout: 20_000 });
    expect(JSON.parse(worker.stdout())).toMatchObject({
      status: "degraded",
      reason: expect.stringMatching(/serving with the unenrolled key N[A-Z2-7]{55}/),
    });
    expect(worker.stderr()).toMatch(/SERVING WITH AN UNENROLLED KEY/);
  });

  it("exits 2 naming --deployment or ARBITER_WORKER_KEYS for a value that is not one", async () => {
    const deployment = await runArbiter(["worker", "--deployment", "staging"], {
      ...env,
      ...configuredWorkerEnv(),
    });
    expect(deployment.code, deployment.stderr).toBe(2);
    expect(deployment.stderr).toMatch(/--deployment \(ARBITER_DEPLOYMENT\): .*deployment id/);
    const keys = await runArbiter(["worker"], { ...env, ARBITER_WORKER_KEYS: generateKey("O").publicKey });
    expect(keys.code, keys.stderr).toBe(2);
    expect(keys.stderr).toMatch(/ARBITER_WORKER_KEYS: "O[A-Z2-7]+" is not a worker public key/);
  });
});

describe("arbiter worker with admin keys that signed none of the rules", () => {
  it("exits 2 naming the admin keys, not the enrollment, as what is wrong", async () => {
    await using server = await startNatsServer();
    const admin = generateKey("O");
    const worker = generateKey("N");
    const asAdmin = {
      NATS_URL: server.url,
      ARBITER_ADMIN_SEED: admin.seed,
      ARBITER_HOME: "/nonexistent-arbiter-home",
    };
    const applied = await runArbiter(["rules", "apply", EXAMPLE], asAdmin);
    expect(applied.code, applied.stderr).toBe(0);
    expect((await runArbiter(["workers", "enroll", worker.publicKey], asAdmin)).code).toBe(0);
    const base = {
      NATS_URL: server.url,
      ARBITER_HOME: "/nonexistent-arbiter-home",
      ARBITER_WORKER_SEED: worker.seed,
    };
    const other = generateKey("O").publicKey;
    const wrong = await runArbiter(["worker"], {
      ...base,
      ARBITER_ADMIN_KEYS: other,
      ARBITER_LOG_LEVEL: "silent",
    });
    expect(wrong.code, wrong.stderr).toBe(2);
    expect(wrong.stderr).toContain(
      `this worker applied none of the 3 rule events in the stream, so it cannot see whether its key ${worker.publicKey} is enrolled: they are not signed by its admin keys (${other}); set ARBITER_ADMIN_KEYS`,
    );
    const none = await runArbiter(["worker"], {
      ...base,
      ARBITER_ADMIN_KEYS: "",
      ARBITER_LOG_LEVEL: "silent",
    });
    expect(none.code, none.stderr).toBe(2);
    expect(none.stderr).toMatch(
      /applied none of the 3 rule events .*: no admin keys are configured; set ARBITER_ADMIN_KEYS/,
    );
    const right = await runArbiter(["worker", "--admin-keys", admin.publicKey, "--deployment", "elsewhere"], {
      ...base,
      ARBITER_LOG_LEVEL: "silent",
    });
    expect(right.stderr).not.toMatch(/applied none/);
  });
});

describe("arbiter worker pointed at a NATS other than the local arbiter up's", () => {
  it("does not accept the local admin key of ARBITER_HOME there", async () => {
    await using server = await startNatsServer();
    const home = mkdtempSync(join(tmpdir(), "arbiter-worker-home-"));
    try {
      const local = generateKey("O");
      writeFileSync(join(home, "admin.seed"), `${local.seed}\n`, { mode: 0o600 });
      const asAdmin = { NATS_URL: server.url, ARBITER_ADMIN_SEED: local.seed, ARBITER_HOME: home };
      expect((await runArbiter(["rules", "apply", EXAMPLE], asAdmin)).code).toBe(0);
      const result = await runArbiter(["worker"], {
        NATS_URL: server.url,
        ARBITER_HOME: home,
        ARBITER_ADMIN_KEYS: "",
        ARBITER_WORKER_SEED: generateKey("N").seed,
        ARBITER_LOG_LEVEL: "warn",
        ARBITER_LOG_FORMAT: "json",
      });
      expect(result.code).toBe(2);
      expect(result.stderr).toMatch(/applied none of the 2 rule events .*: no admin keys are configured/);
      expect(result.stderr).toMatch(
        /the local admin key of `arbiter up` \(\S+admin\.seed\) is not accepted for NATS at/,
      );
      expect(result.stderr).not.toMatch(/accepting the local admin key/);
    } finally {
      rmSync(home, { recursive: true, force: true });
    }
  });
});

describe("arbiter worker on a NATS without JetStream", () => {
  it("exits 4 at once, saying JetStream is not available", async () => {
    await using server = await startNatsServer({ jetstream: false });
    const result = await runArbiter(["worker"], { NATS_URL: server.url, ARBITER_LOG_LEVEL: "warn" });
    expect(result.code).toBe(4);
    expect(result.stderr).toMatch(/JetStream is not available/);
  });
});

describe("arbiter worker with no NATS to reach", () => {
  it("logs every failed attempt and keeps retrying", async () => {
    const gone = await startNatsServer({ jetstream: false });
    const url = gone.url;
    await gone.stop();
    await using worker = spawnArbiter(["worker"], { NATS_URL: url, ARBITER_LOG_LEVEL: "info" });
    await until(() => (worker.stderr().match(/cannot reach NATS yet/g) ?? []).length >= 3, {
      name: "three failed attempts logged",
      timeout: 20_000,
    });
    expect(worker.child.exitCode).toBeNull();
  });
});
