import { ruleEventHash } from "@arbiter/rules";
import { createSigner, generateKey, signJson } from "@arbiter/trust";
import { describe, expect, it } from "vitest";
import { createMemoryStore } from "./memory-store.js";
import { createRulesAdmin, newDeploymentId } from "./rules-admin.js";

const allowAll = { version: 1 as const, default: "allow" as const, rules: [] };
const denyAll = { version: 1 as const, default: "deny" as const, rules: [] };

function setup() {
  const store = createMemoryStore();
  const signer = createSigner(generateKey("O").seed);
  return { store, signer, admin: createRulesAdmin({ store, signer }) };
}

describe("the rules administration", () => {
  it("makes 128-bit base32 deployment ids", () => {
    const ids = new Set(Array.from({ length: 50 }, () => newDeploymentId()));
    expect(ids.size).toBe(50);
    for (const id of ids) expect(id).toMatch(/^[A-Z2-7]{26}$/);
  });

  it("starts an empty stream with a genesis event, then chains each event to the one before", async () => {
    const { store, admin } = setup();
    const first = await admin.apply(allowAll);
    expect(first.revision).toBe(2);
    const second = await admin.enrollWorker(createSigner(generateKey("N").seed).publicKey, { name: "w1" });
    expect(second).toMatchObject({ revision: 3, deployment: first.deployment, snapshot: "saved" });
    const history = await admin.history();
    expect(history.map((e) => e.type)).toEqual(["deployment.created", "ruleset.replaced", "worker.enrolled"]);
    expect(history.map((e) => e.deployment)).toEqual([first.deployment, first.deployment, first.deployment]);
    expect(history[0]!.prev).toBeNull();
    expect(history[1]!.prev).toBe(history[0]!.hash);
    expect(history[2]!.prev).toBe(history[1]!.hash);
    expect(history.every((e) => e.applied && e.broken === null)).toBe(true);
    expect(history[2]!.hash).toBe(ruleEventHash((await store.rules.get(3))!.text));
    expect(await admin.ensureDeployment()).toBe(first.deployment);
    expect(await admin.snapshotProblem()).toBeNull();
  });

  it("refuses a worker key that is not one, writing nothing", async () => {
    const { store, admin } = setup();
    await expect(admin.enrollWorker(generateKey("O").publicKey)).rejects.toMatchObject({
      code: "INVALID_KEY",
    });
    expect(await store.rules.lastRevision()).toBe(0);
  });

  it("shows where the chain breaks and writes nothing onto a broken history", async () => {
    const { store, admin } = setup();
    await admin.apply(denyAll);
    // A signed event of this deployment stored again later (a replay, or a refill out of order).
    const copy = (await store.rules.get(2))!.text;
    await store.rules.append(copy, 2);
    const history = await admin.history();
    expect(history[2]).toMatchObject({
      applied: false,
      broken: expect.stringMatching(/stored at revision 3/),
    });
    await expect(admin.apply(allowAll)).rejects.toMatchObject({
      code: "CHAIN_BROKEN",
      message: expect.stringMatching(/stops chaining at revision 3 .*nothing was written/),
    });
    expect(await store.rules.lastRevision()).toBe(3);
  });

  it("notices a stream refilled with an older part of its history, through the snapshot's head", async () => {
    const { store, signer, admin } = setup();
    await admin.apply(denyAll);
    await admin.apply(allowAll);
    const events = [(await store.rules.get(1))!.text, (await store.rules.get(2))!.text];
    const refilled = createMemoryStore();
    await refilled.snapshots.save((await store.snapshots.load())!, 3);
    for (const [i, text] of events.entries()) await refilled.rules.append(text, i);
    const readmin = createRulesAdmin({ store: refilled, signer });
    expect(await readmin.snapshotProblem()).toMatch(/revision 3 .* the rules stream does not have/);
    await expect(readmin.apply(allowAll)).rejects.toMatchObject({
      code: "CHAIN_BROKEN",
      message: expect.stringMatching(/deleted and refilled/),
    });
  });

  it("refuses to write onto a stream of the earlier, unchained format", async () => {
    const { store, signer, admin } = setup();
    const old = {
      type: "ruleset.replaced",
      eventId: "x",
      at: new Date().toISOString(),
      actor: signer.publicKey,
    };
    await store.rules.append(signJson({ ...old, previous: 0, payload: { document: allowAll } }, signer), 0);
    expect((await admin.history())[0]!.rejection).toMatch(/unchained format/);
    await expect(admin.apply(allowAll)).rejects.toMatchObject({
      code: "CHAIN_BROKEN",
      message: expect.stringMatching(/no genesis event at revision 1.*apply the rules again/),
    });
  });
});
