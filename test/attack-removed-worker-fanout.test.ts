import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { until } from "./harness/index.js";
import { runArbiter } from "./support/cli.js";
import {
  applyRules,
  componentBody,
  defaultRules,
  untilIndexCaughtUp,
  untilRevisionReevaluated,
} from "./support/fanout.js";
import { type FanoutArbiter, startFanoutArbiter } from "./support/fanout-setup.js";

// A worker whose key an admin removed leaves the policy topic; it must leave the fan-out too: a
// re-evaluation it signed with the removed key would make the audit fail for ever.

const PER_HOST = 20;

let arbiter: FanoutArbiter;

beforeAll(async () => {
  arbiter = await startFanoutArbiter({ workers: ["removed"], storeOptions: { revocationAckWaitMs: 2000 } });
}, 60_000);

afterAll(async () => {
  await arbiter?.close();
});

describe("a worker whose key was removed", () => {
  it("re-evaluates nothing and signs nothing: an enrolled worker sends the overrides, and the audit verifies", async () => {
    const [removed] = arbiter.workers;
    const host = await arbiter.startHost();
    for (let i = 0; i < PER_HOST; i++) await host.evaluateStartComponent(componentBody(`c${i}`));
    await untilIndexCaughtUp(arbiter.nc);
    await arbiter.admin.removeWorker(removed!.publicKey);
    await until(() => removed!.health.state === "degraded", { name: "the removed worker degraded" });
    const revision = await applyRules(arbiter.admin, defaultRules("allow"));
    const enrolled = await arbiter.startWorker("enrolled");
    await untilRevisionReevaluated(arbiter.nc, revision, 60_000);
    await until(() => [...host.cacheEntries().values()].every((e) => e.permitted), {
      name: "every cached denial permitted",
      timeout: 30_000,
    });
    expect(removed!.statusRecord().stats["fanoutOverrides"]).toBe(0);
    expect(enrolled.statusRecord().stats["fanoutOverrides"]).toBe(PER_HOST);
    const audit = await runArbiter(["audit", "verify", "--json"], {
      NATS_URL: arbiter.server.url,
      ARBITER_ADMIN_SEED: "",
      ARBITER_ADMIN_KEYS: arbiter.signer.publicKey,
      ARBITER_HOME: "/nonexistent-arbiter-home",
    });
    expect(audit.code, audit.stdout + audit.stderr).toBe(0);
    expect(JSON.parse(audit.stdout)).toMatchObject({ valid: true });

    // Enrolled again (the other one gone), it takes the fan-out's feeds again.
    await enrolled.stop();
    await arbiter.admin.enrollWorker(removed!.publicKey);
    await until(() => removed!.health.state === "ready", { name: "the worker enrolled again ready" });
    const again = await applyRules(arbiter.admin, defaultRules("deny"));
    await untilRevisionReevaluated(arbiter.nc, again, 60_000);
    await until(() => [...host.cacheEntries().values()].every((e) => !e.permitted), {
      name: "every cached permission revoked",
      timeout: 30_000,
    });
    expect(removed!.statusRecord().stats["fanoutOverrides"]).toBe(PER_HOST);
  }, 90_000);
});
