import { generateKey } from "@arbiter/trust";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type NatsServerProcess, startNatsServer, until } from "./harness/index.js";
import { runArbiter, spawnArbiter } from "./support/cli.js";

// `arbiter worker` that cannot start exits at once, non-zero, naming the setting; one that cannot
// reach NATS yet says so on every attempt and keeps trying.

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

  it("exits 2 naming --prefix, --max-queued, --max-payload, --inbox-prefix and --on-log-outage for bad values", async () => {
    const cases: Array<[string[], RegExp]> = [
      [["--prefix", "bad prefix!"], /--prefix/],
      [["--max-queued", "abc"], /--max-queued "abc"/],
      [["--max-payload", "12x"], /--max-payload "12x"/],
      [["--inbox-prefix", "wasmcloud."], /--inbox-prefix.*wasmcloud\./],
      [["--on-log-outage", "loud"], /--on-log-outage.*loud/],
    ];
    for (const [args, message] of cases) {
      const result = await runArbiter(["worker", ...args], env);
      expect(result.code, args.join(" ")).toBe(2);
      expect(result.stderr, args.join(" ")).toMatch(message);
    }
  });

  it("starts with a custom inbox prefix and onLogOutage from the environment", async () => {
    await using worker = spawnArbiter(["worker", "--json", "--inbox-prefix", "myapp.replies.,_INBOX."], {
      ...env,
      ARBITER_ON_LOG_OUTAGE: "deny",
    });
    await until(() => worker.stdout().includes('"status"'), { name: "the worker ready", timeout: 20_000 });
    expect(JSON.parse(worker.stdout())).toMatchObject({ servers: [server.url] });
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
