import { resourceNames } from "@arbiter/protocol";
import { decisionBatchFromTexts, verifyDecision } from "@arbiter/store";
import { createSigner, generateKey, splitSealedJson, verifySealedJson } from "@arbiter/trust";
import { createWorker } from "@arbiter/worker";
import { jetstream } from "@nats-io/jetstream";
import { headers } from "@nats-io/nats-core";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { until } from "./harness/index.js";
import { type SingleNodeArbiter, startSingleNodeArbiter } from "./support/arbiter.js";
import { runArbiter } from "./support/cli.js";
import { fixtureBytes } from "./support/fixtures.js";
import { captureLog } from "./support/log-capture.js";

// The attacker can append to ARBITER_DECISIONS (a stolen worker credential) and makes a key of
// their own. Before worker keys were enrolled, a decision record signed by any fresh key verified:
// the record names the key that checks it.

const names = resourceNames();
const silent = pino({ level: "silent" });

interface AuditReport {
  valid: boolean;
  decisions: { checked: number; verified: number; failed: number };
  failures: { decisionId: string | null; worker: string | null; reason: string }[];
}

describe("worker keys are enrolled", () => {
  let arbiter: SingleNodeArbiter;
  let env: Record<string, string>;

  beforeAll(async () => {
    arbiter = await startSingleNodeArbiter();
    env = {
      NATS_URL: arbiter.server.url,
      ARBITER_ADMIN_SEED: "",
      ARBITER_ADMIN_KEYS: arbiter.signer.publicKey,
      ARBITER_HOME: "/nonexistent-arbiter-home",
      ARBITER_LOG_LEVEL: "warn",
    };
  });

  afterAll(async () => {
    await arbiter?.stop();
  });

  async function audit(
    extra: Record<string, string> = {},
  ): Promise<{ code: number | null; report: AuditReport }> {
    const result = await runArbiter(["audit", "verify", "--json"], { ...env, ...extra });
    return { code: result.code, report: JSON.parse(result.stdout) as AuditReport };
  }

  it("a decision batch signed by an unenrolled key, appended to ARBITER_DECISIONS, fails verification", async () => {
    await arbiter.ask(fixtureBytes("start-provider"));
    // The harness's worker key is enrolled by configuration (ARBITER_WORKER_KEYS); the audit is told so.
    const configured = { ARBITER_WORKER_KEYS: arbiter.worker.publicKey };
    const before = await audit(configured);
    expect(before.code).toBe(0);
    expect(before.report).toMatchObject({ valid: true, decisions: { failed: 0 } });

    let genuine = "";
    for await (const d of arbiter.store.decisions.read()) genuine = d.text;
    const attacker = createSigner(generateKey("N").seed);
    const forged = splitSealedJson(genuine)!
      .body.replace(arbiter.worker.publicKey, attacker.publicKey)
      .replace(/"decisionId":"[^"]+"/, '"decisionId":"01FORGED0000000000000000000"')
      .replace('"permitted":false', '"permitted":true');
    const batch = decisionBatchFromTexts(
      [{ decisionId: "01FORGED0000000000000000000", text: forged }],
      attacker,
    );
    const h = headers();
    h.set("Arbiter-Batch-Signature", batch.signature);
    await jetstream(arbiter.nc).publish(names.decisionsSubject, batch.lines, { headers: h });

    let stored = "";
    for await (const d of arbiter.store.decisions.read()) stored = d.text;
    // What verified before: the record's own key checks its signature.
    expect(verifySealedJson(stored, attacker.publicKey)).toBe(true);
    expect(
      verifyDecision(stored, {
        deployment: arbiter.deployment,
        workers: [],
        configured: [arbiter.worker.publicKey],
      }),
    ).toMatchObject({
      valid: false,
      reason: `signed by worker key ${attacker.publicKey}, which was never enrolled`,
    });

    const after = await audit(configured);
    expect(after.code).toBe(1);
    expect(after.report.valid).toBe(false);
    expect(after.report.decisions).toMatchObject({
      checked: before.report.decisions.checked + 1,
      verified: before.report.decisions.checked,
      failed: 1,
    });
    expect(after.report.failures).toEqual([
      {
        stream: names.decisionsStream,
        seq: expect.any(Number),
        index: 0,
        eventId: null,
        decisionId: "01FORGED0000000000000000000",
        worker: attacker.publicKey,
        revision: expect.any(Number),
        reason: `signed by worker key ${attacker.publicKey}, which was never enrolled`,
      },
    ]);
    // Without the configured key the genuine worker's records fail too: nothing is trusted by default.
    const unconfigured = await audit();
    expect(unconfigured.report.decisions.failed).toBe(unconfigured.report.decisions.checked);
    const text = await runArbiter(["audit", "verify"], { ...env, ...configured });
    expect(text.code).toBe(1);
    expect(text.stdout).toMatch(/1 FAILED\n {2}message \d+ record 0 \(01FORGED0+\): signed by worker key N/);
  });

  it("a worker whose key is not enrolled refuses to start, naming the key and how to enroll it", async () => {
    const key = generateKey("N");
    const worker = createWorker({
      nc: arbiter.nc,
      logger: silent,
      config: { adminKeys: [arbiter.signer.publicKey], workerSeed: key.seed, queueGroup: "unenrolled" },
    });
    await expect(worker.start()).rejects.toMatchObject({
      code: "WORKER_NOT_ENROLLED",
      message: expect.stringContaining(
        `this worker's key ${key.publicKey} is not enrolled in deployment ${arbiter.deployment}: enroll it with \`arbiter workers enroll ${key.publicKey}\``,
      ),
    });
    expect(worker.status).toBe("stopped");
    const cli = await runArbiter(["worker"], { ...env, ARBITER_WORKER_SEED: key.seed });
    expect(cli.code).toBe(2);
    expect(cli.stderr).toContain(`arbiter workers enroll ${key.publicKey}`);
  });

  it("enrolled with `arbiter workers enroll`, the worker serves and its decisions verify; removed, it stops answering until enrolled again", async () => {
    const key = generateKey("N");
    const admin = { ...env, ARBITER_ADMIN_SEED: arbiter.adminSeed };
    const enrolled = await runArbiter(
      ["workers", "enroll", key.publicKey, "--name", "w-enrolled", "--json"],
      admin,
    );
    expect(enrolled.code, enrolled.stderr).toBe(0);
    const { revision: enrolledAt } = JSON.parse(enrolled.stdout) as { revision: number };
    const listed = await runArbiter(["workers", "list", "--json"], env);
    expect(JSON.parse(listed.stdout)).toMatchObject({
      deployment: arbiter.deployment,
      workers: [{ publicKey: key.publicKey, name: "w-enrolled", from: enrolledAt, to: null, enrolled: true }],
    });

    // Its own topic: nothing but this worker answers there, so a request it leaves alone finds no responder.
    const topic = "enrolled.policy";
    const ask = () => arbiter.nc.request(topic, fixtureBytes("start-provider"), { timeout: 5000 });
    const log = captureLog();
    const worker = createWorker({
      nc: arbiter.nc,
      logger: log.logger,
      config: {
        adminKeys: [arbiter.signer.publicKey],
        workerSeed: key.seed,
        queueGroup: "enrolled",
        policyTopic: topic,
        changesTopic: "enrolled.policy.changes",
      },
    });
    await worker.start();
    try {
      expect(worker.health).toEqual({ state: "ready", reason: null });
      expect(worker.statusRecord()).toMatchObject({ enrolled: true, deployment: arbiter.deployment });
      const configured = { ARBITER_WORKER_KEYS: arbiter.worker.publicKey };
      const byThisKey = (r: AuditReport) => r.failures.filter((f) => f.worker === key.publicKey);
      await ask();
      expect(worker.stats().decisions).toBe(1);
      expect(byThisKey((await audit(configured)).report)).toEqual([]);

      const removed = await runArbiter(["workers", "remove", key.publicKey, "--json"], admin);
      expect(removed.code, removed.stderr).toBe(0);
      await until(() => worker.health.state === "degraded", { name: "the removed worker degraded" });
      expect(worker.health.reason).toMatch(
        new RegExp(
          `key ${key.publicKey} was removed at revision \\d+: not answering policy requests until it is enrolled again`,
        ),
      );
      expect(worker.statusRecord()).toMatchObject({ state: "degraded", enrolled: false });
      expect(log.lines()).toContainEqual(
        expect.objectContaining({
          level: 50,
          publicKey: key.publicKey,
          msg: expect.stringContaining("stopped answering policy requests"),
        }),
      );
      // Before: it kept deciding, and every decision it signed failed verification.
      await expect(ask()).rejects.toThrow(/no responders/i);
      expect(worker.stats().decisions).toBe(1);
      expect(byThisKey((await audit(configured)).report)).toEqual([]);
      const again = createWorker({
        nc: arbiter.nc,
        logger: silent,
        config: { adminKeys: [arbiter.signer.publicKey], workerSeed: key.seed, queueGroup: "again" },
      });
      await expect(again.start()).rejects.toMatchObject({ code: "WORKER_NOT_ENROLLED" });

      const reenrolled = await runArbiter(["workers", "enroll", key.publicKey, "--json"], admin);
      expect(reenrolled.code, reenrolled.stderr).toBe(0);
      await until(() => worker.health.state === "ready", { name: "the re-enrolled worker is ready again" });
      expect(log.lines()).toContainEqual(
        expect.objectContaining({ msg: expect.stringContaining("answering policy requests again") }),
      );
      await ask();
      expect(worker.stats().decisions).toBe(2);
      expect(byThisKey((await audit(configured)).report)).toEqual([]);
    } finally {
      await worker.stop();
    }
  });
});
