import { resourceNames } from "@arbiter/protocol";
import { verifyDecision } from "@arbiter/store";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { configuredWorkerKey, type SingleNodeArbiter, startSingleNodeArbiter } from "./support/arbiter.js";
import { runArbiter } from "./support/cli.js";
import { fixtureBytes } from "./support/fixtures.js";

// The attacker can append to production's ARBITER_DECISIONS (a stolen worker credential) and holds
// decision batches of staging, where the same worker key is enrolled. Before decisions named their
// deployment, a staging batch copied into production verified there: its signature is genuine and
// the key is enrolled in both.

const names = resourceNames();

interface AuditReport {
  valid: boolean;
  deployment: string;
  decisions: { checked: number; verified: number; failed: number };
  failures: { decisionId: string | null; reason: string }[];
}

describe("decisions are bound to their deployment", () => {
  const key = configuredWorkerKey();
  let staging: SingleNodeArbiter;
  let production: SingleNodeArbiter;

  beforeAll(async () => {
    staging = await startSingleNodeArbiter(key);
    production = await startSingleNodeArbiter(key);
  });

  afterAll(async () => {
    await staging?.stop();
    await production?.stop();
  });

  async function audit(arbiter: SingleNodeArbiter): Promise<{ code: number | null; report: AuditReport }> {
    const result = await runArbiter(["audit", "verify", "--json"], {
      NATS_URL: arbiter.server.url,
      ARBITER_ADMIN_SEED: "",
      ARBITER_ADMIN_KEYS: arbiter.signer.publicKey,
      ARBITER_HOME: "/nonexistent-arbiter-home",
      ARBITER_LOG_LEVEL: "warn",
      ARBITER_WORKER_KEYS: key.workerKeys.join(","),
    });
    return { code: result.code, report: JSON.parse(result.stdout) as AuditReport };
  }

  it("every decision names the deployment of the rules it was made under", async () => {
    await production.ask(fixtureBytes("start-component"));
    let last = "";
    for await (const d of production.store.decisions.read()) last = d.text;
    expect(JSON.parse(last)).toMatchObject({ deployment: production.deployment });
    expect(
      verifyDecision(last, { workers: [], configured: key.workerKeys, deployment: production.deployment }),
    ).toMatchObject({ valid: true });
  });

  it("a staging batch signed by a key enrolled in both, copied into production, fails verification there", async () => {
    await staging.ask(fixtureBytes("start-provider"));
    const before = await audit(production);
    expect(before.code).toBe(0);
    expect(before.report).toMatchObject({ valid: true, deployment: production.deployment });

    const stagingJsm = await jetstreamManager(staging.nc);
    const { state } = await stagingJsm.streams.info(names.decisionsStream);
    const copied = await stagingJsm.streams.getMessage(names.decisionsStream, { seq: state.last_seq });
    expect(copied).not.toBeNull();
    await jetstream(production.nc).publish(names.decisionsSubject, copied!.data, {
      headers: copied!.header,
    });
    const copiedId = (JSON.parse(copied!.string()) as { decisionId: string }).decisionId;

    const after = await audit(production);
    expect(after.code).toBe(1);
    expect(after.report.valid).toBe(false);
    expect(after.report.decisions).toMatchObject({
      checked: before.report.decisions.checked + 1,
      verified: before.report.decisions.checked,
      failed: 1,
    });
    expect(after.report.failures).toEqual([
      expect.objectContaining({
        decisionId: copiedId,
        reason: `made in deployment ${staging.deployment}, not in this one (${production.deployment})`,
      }),
    ]);
    // In staging, where it was made, the same record verifies.
    expect((await audit(staging)).report).toMatchObject({ valid: true, decisions: { failed: 0 } });
  });
});
