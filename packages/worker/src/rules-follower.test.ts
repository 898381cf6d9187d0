import { ruleEventHash } from "@arbiter/rules";
import { createMemoryStore, createRulesAdmin } from "@arbiter/store";
import { createSigner, generateKey } from "@arbiter/trust";
import { pino } from "pino";
import { describe, expect, it, vi } from "vitest";
import { RulesFollower } from "./rules-follower.js";

const admin = createSigner(generateKey("O").seed);
const allowAll = { version: 1 as const, default: "allow" as const, rules: [] };
const denyAll = { version: 1 as const, default: "deny" as const, rules: [] };

function follower(store: ReturnType<typeof createMemoryStore>) {
  return new RulesFollower({
    store,
    trust: { adminKeys: new Set([admin.publicKey]) },
    log: pino({ level: "silent" }),
    retryMs: 10,
    chainCheckMs: 10,
    onChange: () => {},
  });
}

describe("the rules follower", () => {
  it("starts from a snapshot whose head is in the stream and follows on from it", async () => {
    const store = createMemoryStore();
    const rules = createRulesAdmin({ store, signer: admin });
    await rules.apply(denyAll);
    const f = follower(store);
    await f.start(1000);
    try {
      expect(f.ruleset).toMatchObject({ revision: 2, broken: null });
      expect(f.problem).toBeNull();
      await rules.apply(allowAll);
      await f.waitForRevision(3, 1000);
      expect(f.ruleset.document?.default).toBe("allow");
    } finally {
      await f.stop();
    }
  });

  it("notices, without a new event, that the event at its revision is no longer the one it applied", async () => {
    const store = createMemoryStore();
    await createRulesAdmin({ store, signer: admin }).apply(denyAll);
    const f = follower(store);
    await f.start(1000);
    try {
      const get = store.rules.get.bind(store.rules);
      // The stream as refilled: the same revision now holds another event.
      store.rules.get = async (revision) => {
        const stored = await get(revision);
        return stored && revision === 2 ? { revision, text: `${stored.text} ` } : stored;
      };
      await vi.waitFor(() => expect(f.chainBreaks).toBe(1), { timeout: 2000 });
      expect(f.ruleset).toMatchObject({ revision: 2, broken: { revision: 2 } });
      expect(f.ruleset.head).toBe(ruleEventHash((await get(2))!.text));
      expect(f.problem).toMatch(/stops chaining at revision 2 .*not the one this worker applied/);
    } finally {
      await f.stop();
    }
  });

  it("refuses a snapshot of another deployment and folds the stream's own history", async () => {
    const store = createMemoryStore();
    await createRulesAdmin({ store, signer: admin }).apply(denyAll);
    const other = createMemoryStore();
    await createRulesAdmin({ store: other, signer: admin }).apply(allowAll);
    await createRulesAdmin({ store: other, signer: admin }).apply(allowAll);
    const foreign = (await other.snapshots.load())!;
    store.snapshots.load = async () => foreign;
    const f = follower(store);
    await f.start(1000);
    try {
      expect(f.snapshotsRefused).toBe(1);
      expect(f.ruleset).toMatchObject({ revision: 2, broken: null });
      expect(f.ruleset.document?.default).toBe("deny");
      expect(f.problem).toMatch(/the rules snapshot was refused: the snapshot belongs to deployment/);
    } finally {
      await f.stop();
    }
  });
});
