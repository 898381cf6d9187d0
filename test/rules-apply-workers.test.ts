import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { resourceNames } from "@arbiter/protocol";
import { createSigner, generateKey } from "@arbiter/trust";
import { createWorker, type Worker } from "@arbiter/worker";
import { Kvm } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/nats-core";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectTo, type NatsServerProcess, startNatsServer } from "./harness/index.js";
import { configuredWorkerKey } from "./support/arbiter.js";
import { runArbiter } from "./support/cli.js";

const EXAMPLE = new URL("../deploy/rules/example.yaml", import.meta.url).pathname;
const names = resourceNames();

// The workers answer on their status subject with the admin keys they accept; `rules apply` asks them.
describe("rules apply asks the running workers whether they accept its key", () => {
  let server: NatsServerProcess;
  let nc: NatsConnection;
  let worker: Worker;
  let home: string;
  let env: Record<string, string>;
  const signing = generateKey("O");
  const acceptedKey = generateKey("O");
  const accepted = createSigner(acceptedKey.seed);

  beforeAll(async () => {
    server = await startNatsServer();
    nc = await connectTo(server.url);
    home = mkdtempSync(join(tmpdir(), "arbiter-apply-workers-"));
    env = {
      NATS_URL: server.url,
      ARBITER_ADMIN_SEED: signing.seed,
      ARBITER_ADMIN_KEYS: "",
      ARBITER_HOME: home,
      ARBITER_LOG_LEVEL: "warn",
    };
    worker = createWorker({
      nc,
      logger: pino({ level: "silent" }),
      config: { id: "apply-w1", adminKeys: [accepted.publicKey], ...configuredWorkerKey() },
    });
    await worker.start();
  });

  afterAll(async () => {
    await worker?.stop();
    await nc?.close();
    await server?.stop();
    rmSync(home, { recursive: true, force: true });
  });

  it("refuses a key no worker accepts, naming it and theirs, and writes nothing", async () => {
    const kv = await new Kvm(nc).open(names.rulesBucket);
    const snapshotBefore = (await kv.get("snapshot"))?.revision ?? 0;

    const refused = await runArbiter(["rules", "apply", EXAMPLE], env);
    expect(refused.code, refused.stdout).toBe(2);
    expect(refused.stderr).toContain(createSigner(signing.seed).publicKey);
    expect(refused.stderr).toContain("apply-w1");
    expect(refused.stderr).toContain(`(apply-w1 accepts ${accepted.publicKey})`);
    const json = await runArbiter(["rules", "apply", EXAMPLE, "--json"], env);
    expect(JSON.parse(json.stderr)).toMatchObject({ error: { code: "ADMIN_KEY_NOT_ACCEPTED" } });

    const history = await runArbiter(["rules", "history", "--json"], env);
    expect(history.code, history.stderr).toBe(0);
    expect(JSON.parse(history.stdout)).toEqual([]);
    expect((await kv.get("snapshot"))?.revision ?? 0).toBe(snapshotBefore);
  });

  it("applies with a key the workers accept and names them", async () => {
    const applied = await runArbiter(["rules", "apply", EXAMPLE, "--json"], {
      ...env,
      ARBITER_ADMIN_SEED: acceptedKey.seed,
    });
    expect(applied.code, applied.stderr).toBe(0);
    expect(JSON.parse(applied.stdout)).toMatchObject({
      revision: 2,
      acceptedBy: ["apply-w1"],
      refusedBy: [],
    });
  });
});
