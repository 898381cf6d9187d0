import { resourceNames } from "@arbiter/protocol";
import { ruleEventHash } from "@arbiter/rules";
import { createSigner, generateKey, signJson } from "@arbiter/trust";
import { createWorker } from "@arbiter/worker";
import { jetstream } from "@nats-io/jetstream";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { until } from "./harness/index.js";
import { configuredWorkerKey, type SingleNodeArbiter, startSingleNodeArbiter } from "./support/arbiter.js";
import { fixtureBytes } from "./support/fixtures.js";

const names = resourceNames();
const allowAll = { version: 1 as const, default: "allow" as const, rules: [] };

describe("rule events that are not validly signed change nothing", () => {
  let arbiter: SingleNodeArbiter;
  const intruder = createSigner(generateKey("O").seed);

  /** Publishes raw text straight onto the rules stream, as anyone with publish rights could. */
  async function publishRaw(text: string): Promise<number> {
    return (await jetstream(arbiter.nc).publish(names.rulesSubject, text)).seq;
  }

  async function startComponentPermitted(): Promise<boolean> {
    return (await arbiter.ask(fixtureBytes("start-component"))).permitted;
  }

  /** A rule event chained onto what the stream holds now, as an admin would sign it. */
  async function event(extra: Record<string, unknown> = {}) {
    const previous = await arbiter.store.rules.lastRevision();
    const last = await arbiter.store.rules.get(previous);
    return {
      type: "ruleset.replaced",
      eventId: `e-${previous}`,
      at: new Date().toISOString(),
      actor: arbiter.signer.publicKey,
      previous,
      deployment: arbiter.deployment,
      prev: last === null ? null : ruleEventHash(last.text),
      payload: { document: allowAll },
      ...extra,
    };
  }

  beforeAll(async () => {
    arbiter = await startSingleNodeArbiter();
  });

  afterAll(async () => {
    await arbiter?.stop();
  });

  it("skips unsigned, foreign-signed, tampered and invalid events and keeps its rules", async () => {
    const { worker, signer, admin } = arbiter;
    expect(await startComponentPermitted()).toBe(false);
    const brokenRules = {
      version: 1,
      default: "allow",
      rules: [{ id: "x", effect: "allow", when: "kind ==" }],
    };
    const valid = signJson(await event(), signer);
    await publishRaw(JSON.stringify({ ...(await event()), signature: "AAAA" }));
    await publishRaw(signJson({ ...(await event()), actor: intruder.publicKey }, intruder));
    await publishRaw(valid.replace('"previous":2', '"previous":3'));
    await publishRaw("not json at all");
    expect(await publishRaw(signJson(await event({ payload: { document: brokenRules } }), signer))).toBe(7);
    await until(() => worker.revision === 7, { name: "worker consumed revision 7", timeout: 10_000 });
    expect(worker.stats().ruleEventsRejected).toBe(5);
    expect(worker.health.state).toBe("ready");
    expect(await startComponentPermitted()).toBe(false);

    const history = await admin.history();
    expect(history.slice(2).map((h) => h.applied)).toEqual([false, false, false, false, false]);
    expect(history.every((h) => h.broken === null)).toBe(true);
    expect(history[2]?.rejection).toMatch(/signature/);
    expect(history[3]?.rejection).toMatch(/not an accepted admin key/);
    expect(history[4]?.rejection).toMatch(/signature .* is not valid/);
    expect(history[5]?.rejection).toMatch(/not a valid rule event/);
    expect(history[6]?.rejection).toMatch(/compile|invalid rules/);
  });

  it("applies the next validly signed change, chained over the skipped events", async () => {
    const { revision } = await arbiter.admin.apply(allowAll, { expectedRevision: 7 });
    expect(revision).toBe(8);
    await until(() => arbiter.worker.revision === 8, { name: "worker at revision 8", timeout: 10_000 });
    expect(await startComponentPermitted()).toBe(true);
  });

  it("a restarted worker starts from the signed snapshot and agrees", async () => {
    const fresh = createWorker({
      nc: arbiter.nc,
      logger: pino({ level: "silent" }),
      config: { adminKeys: [arbiter.signer.publicKey], queueGroup: "other", ...configuredWorkerKey() },
    });
    await fresh.start();
    try {
      expect(fresh.revision).toBe(8);
      expect(fresh.stats().ruleEventsApplied + fresh.stats().ruleEventsRejected).toBe(0);
    } finally {
      await fresh.stop();
    }
  });

  it("refuses to apply a condition that is not a bool, writing nothing; a worker skips one written anyway", async () => {
    const { admin, signer, worker } = arbiter;
    const oops = {
      version: 1 as const,
      default: "allow" as const,
      rules: [{ id: "oops", effect: "allow" as const, when: "kind" }],
    };
    await expect(admin.apply(oops, { expectedRevision: 8 })).rejects.toMatchObject({
      name: "InvalidRulesError",
      issues: [
        expect.objectContaining({
          ruleId: "oops",
          column: 1,
          message: "the condition is a string, not a bool",
        }),
      ],
    });
    expect(await arbiter.store.rules.lastRevision()).toBe(8);

    const rejectedBefore = worker.stats().ruleEventsRejected;
    expect(await publishRaw(signJson(await event({ payload: { document: oops } }), signer))).toBe(9);
    await until(() => worker.revision === 9, { name: "worker consumed revision 9", timeout: 10_000 });
    expect(worker.stats().ruleEventsRejected).toBe(rejectedBefore + 1);
    expect(await startComponentPermitted()).toBe(true);
    expect((await admin.history()).at(-1)).toMatchObject({
      revision: 9,
      applied: false,
      rejection: expect.stringMatching(/rule "oops": when, column 1: the condition is a string, not a bool/),
    });
  });

  it("a validly signed event replayed later breaks the chain: the worker keeps its rules, degraded", async () => {
    const { worker, store } = arbiter;
    const replayed = (await store.rules.get(8))!.text;
    expect(await publishRaw(replayed)).toBe(10);
    await until(() => worker.stats().chainBreaks === 1, {
      name: "the replay breaks the chain",
      timeout: 10_000,
    });
    expect(worker.revision).toBe(9);
    expect(worker.health).toEqual({
      state: "degraded",
      reason: expect.stringMatching(/stops chaining at revision 10 .*signed to follow revision 7/),
    });
    expect(await startComponentPermitted()).toBe(true);
  });
});
