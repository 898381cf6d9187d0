import type { ArbiterStore, StoredDecision, StoredRuleEvent } from "@arbiter/store";
import { decisionBatchFromTexts, isRuleConflictError } from "@arbiter/store";
import { createSigner, generateKey, splitSealedJson, verifySealedJson } from "@arbiter/trust";
import { afterEach, beforeEach, describe, expect, it } from "vitest";

/** Something that makes a fresh, empty store for each test and disposes of it afterwards. */
export interface StoreFactory {
  create(): Promise<ArbiterStore>;
  dispose?(): Promise<void>;
}

const worker = createSigner(generateKey("N").seed);

/** A batch signed by the test's worker key. */
function batch(decisions: readonly { decisionId: string; text: string }[]) {
  return decisionBatchFromTexts(decisions, worker);
}

/** A stored decision as written: its text without the seal added on reading. */
function unsealed(decision: StoredDecision) {
  return {
    seq: decision.seq,
    index: decision.index,
    text: splitSealedJson(decision.text)?.body ?? "(not sealed)",
  };
}

async function collect<T>(iterable: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of iterable) out.push(item);
  return out;
}

/**
 * The behaviour every ArbiterStore must have. The in-memory store (unit tests) and the
 * JetStream store (integration tests) both run it, so the fast one cannot drift from the real one.
 */
export function describeStoreContract(name: string, factory: StoreFactory): void {
  describe(`store contract: ${name}`, () => {
    let store: ArbiterStore;
    beforeEach(async () => {
      store = await factory.create();
    });
    afterEach(async () => {
      await store.close();
      await factory.dispose?.();
    });

    it("numbers rule events from 1 without gaps", async () => {
      expect(await store.rules.lastRevision()).toBe(0);
      expect(await store.rules.append("a", 0)).toBe(1);
      expect(await store.rules.append("b", 1)).toBe(2);
      expect(await store.rules.lastRevision()).toBe(2);
      expect(await collect(store.rules.read())).toEqual([
        { revision: 1, text: "a" },
        { revision: 2, text: "b" },
      ]);
    });

    it("refuses an append with a stale expected revision", async () => {
      await store.rules.append("a", 0);
      await store.rules.append("b", 1);
      const err = await store.rules.append("c", 1).catch((e: unknown) => e);
      expect(isRuleConflictError(err)).toBe(true);
      expect(err).toMatchObject({ expected: 1, actual: 2 });
      expect(await store.rules.lastRevision()).toBe(2);
    });

    it("lets exactly one of two writers from the same revision win", async () => {
      const results = await Promise.allSettled([store.rules.append("x", 0), store.rules.append("y", 0)]);
      expect(results.filter((r) => r.status === "fulfilled")).toHaveLength(1);
      const rejected = results.find((r) => r.status === "rejected");
      expect(isRuleConflictError(rejected?.reason)).toBe(true);
    });

    it("reads a range of revisions", async () => {
      for (let i = 0; i < 5; i++) await store.rules.append(`e${i + 1}`, i);
      expect((await collect(store.rules.read({ from: 2, to: 4 }))).map((e) => e.revision)).toEqual([2, 3, 4]);
      expect(await collect(store.rules.read({ from: 6 }))).toEqual([]);
    });

    it("follows existing and later events in order", async () => {
      await store.rules.append("one", 0);
      const seen: StoredRuleEvent[] = [];
      const follower = await store.rules.follow(1, (event) => seen.push(event));
      await store.rules.append("two", 1);
      await expect.poll(() => seen.map((e) => e.text), { timeout: 5000 }).toEqual(["one", "two"]);
      await follower.stop();
    });

    it("gets one event by its revision, null where there is none", async () => {
      await store.rules.append("one", 0);
      await store.rules.append("two", 1);
      expect(await store.rules.get(2)).toEqual({ revision: 2, text: "two" });
      expect(await store.rules.get(3)).toBeNull();
      expect(await store.rules.get(0)).toBeNull();
    });

    it("keeps the snapshot with the later revision of the same deployment", async () => {
      const snapshot = (revision: number, deployment = "D1") => JSON.stringify({ revision, deployment });
      expect(await store.snapshots.load()).toBeNull();
      await store.snapshots.save(snapshot(2), 2);
      await store.snapshots.save(snapshot(1), 1);
      expect(await store.snapshots.load()).toBe(snapshot(2));
      await store.snapshots.save(snapshot(3), 3);
      expect(await store.snapshots.load()).toBe(snapshot(3));
      // One copied in from another deployment (at any revision) gives way to this deployment's.
      await store.snapshots.save(snapshot(99, "D2"), 99);
      await store.snapshots.save(snapshot(4), 4);
      expect(await store.snapshots.load()).toBe(snapshot(4));
    });

    it("de-duplicates a batch on its first decision's id", async () => {
      const once = batch([{ decisionId: "d1", text: '{"n":1}' }]);
      const first = await store.decisions.append(once);
      const again = await store.decisions.append(once);
      expect(again).toEqual({ seq: first.seq, duplicate: true });
      expect(first.duplicate).toBe(false);
      expect((await collect(store.decisions.read())).map(unsealed)).toEqual([
        { seq: first.seq, index: 0, text: '{"n":1}' },
      ]);
    });

    it("refuses a batch whose first id already names other decisions, storing nothing", async () => {
      const first = await store.decisions.append(batch([{ decisionId: "d1", text: '{"n":1}' }]));
      await expect(
        store.decisions.append(batch([{ decisionId: "d1", text: '{"n":"other"}' }])),
      ).rejects.toMatchObject({ code: "STORE_UNAVAILABLE", message: expect.stringMatching(/not stored/) });
      expect((await collect(store.decisions.read())).map(unsealed)).toEqual([
        { seq: first.seq, index: 0, text: '{"n":1}' },
      ]);
    });

    it("stores a batch as one message and reads its decisions back in order", async () => {
      const texts = ['{"n":1}', '{"n":"two, with \\n"}', '{"n":"drei ü"}'];
      const { seq } = await store.decisions.append(
        batch(texts.map((text, i) => ({ decisionId: `b${i}`, text }))),
      );
      const later = await store.decisions.append(batch([{ decisionId: "c0", text: '{"n":4}' }]));
      expect(later.seq).toBe(seq + 1);
      expect((await collect(store.decisions.read())).map(unsealed)).toEqual([
        ...texts.map((text, index) => ({ seq, index, text })),
        { seq: later.seq, index: 0, text: '{"n":4}' },
      ]);
      expect((await collect(store.decisions.read({ fromSeq: later.seq }))).map(unsealed)).toEqual([
        { seq: later.seq, index: 0, text: '{"n":4}' },
      ]);
    });

    it("keeps re-evaluation batches in the one log with the requests' batches: read in order, sealed, de-duplicated together", async () => {
      const request = await store.decisions.append(batch([{ decisionId: "q1", text: '{"n":1}' }]));
      const reevaluation = await store.decisions.append({
        ...batch([
          { decisionId: "e1", text: '{"n":2}' },
          { decisionId: "e2", text: '{"n":3}' },
        ]),
        reevaluations: true,
      });
      const later = await store.decisions.append(batch([{ decisionId: "q2", text: '{"n":4}' }]));
      expect([reevaluation.seq, later.seq]).toEqual([request.seq + 1, request.seq + 2]);
      const read = await collect(store.decisions.read());
      expect(read.map(unsealed)).toEqual([
        { seq: request.seq, index: 0, text: '{"n":1}' },
        { seq: reevaluation.seq, index: 0, text: '{"n":2}' },
        { seq: reevaluation.seq, index: 1, text: '{"n":3}' },
        { seq: later.seq, index: 0, text: '{"n":4}' },
      ]);
      for (const { text } of read) expect(verifySealedJson(text, worker.publicKey), text).toBe(true);
      expect((await collect(store.decisions.read({ fromSeq: reevaluation.seq }))).map((d) => d.seq)).toEqual([
        reevaluation.seq,
        reevaluation.seq,
        later.seq,
      ]);
      // One id space across both: a re-evaluation batch under a request's id is that request's
      // duplicate, or refused when it holds other decisions.
      await expect(
        store.decisions.append({ ...batch([{ decisionId: "q1", text: '{"n":1}' }]), reevaluations: true }),
      ).resolves.toEqual({ seq: request.seq, duplicate: true });
      await expect(
        store.decisions.append({
          ...batch([{ decisionId: "q2", text: '{"n":"other"}' }]),
          reevaluations: true,
        }),
      ).rejects.toMatchObject({ code: "STORE_UNAVAILABLE", message: expect.stringMatching(/not stored/) });
      expect(await collect(store.decisions.read())).toHaveLength(4);
    });

    it("reads every decision sealed, so that each verifies on its own", async () => {
      const texts = Array.from({ length: 5 }, (_, n) => JSON.stringify({ n }));
      await store.decisions.append(batch(texts.map((text, i) => ({ decisionId: `s${i}`, text }))));
      const read = await collect(store.decisions.read());
      expect(read).toHaveLength(5);
      for (const { text } of read) expect(verifySealedJson(text, worker.publicKey), text).toBe(true);
      const stranger = createSigner(generateKey("N").seed);
      expect(verifySealedJson(read[0]!.text, stranger.publicKey)).toBe(false);
    });

    it("reads decisions as stored, without seals, when asked to", async () => {
      const texts = ['{"n":1}', '{"n":"two, with \\n"}', '{"n":"drei ü"}'];
      const { seq } = await store.decisions.append(
        batch(texts.map((text, i) => ({ decisionId: `u${i}`, text }))),
      );
      await store.decisions.append({ ...batch([{ decisionId: "v0", text: '{"n":4}' }]), signature: "c2ln" });
      expect(await collect(store.decisions.read({ sealed: false }))).toEqual([
        ...texts.map((text, index) => ({ seq, index, text })),
        { seq: seq + 1, index: 0, text: '{"n":4}' },
      ]);
      expect(await collect(store.decisions.read({ sealed: false, kind: "none" }))).toEqual([]);
    });

    it("keeps a batch's signature: one that does not match its lines does not verify", async () => {
      const signed = batch([{ decisionId: "x1", text: '{"n":1}' }]);
      const other = batch([{ decisionId: "x2", text: '{"n":2}' }]);
      await store.decisions.append({ ...signed, signature: other.signature });
      const [stored] = await collect(store.decisions.read());
      expect(splitSealedJson(stored!.text)?.body).toBe('{"n":1}');
      expect(verifySealedJson(stored!.text, worker.publicKey)).toBe(false);
    });

    it("refuses a malformed batch", async () => {
      const { signature } = batch([{ decisionId: "a", text: '{"n":1}' }]);
      const append = (decisionIds: string[], lines: string, sig = signature) =>
        store.decisions.append({ decisionIds, lines: Buffer.from(lines), signature: sig });
      await expect(append([], "")).rejects.toThrow(/at least one decision/);
      await expect(append(["a", "b"], '{"n":1}')).rejects.toThrow(/2 decision ids but 1 lines/);
      await expect(append(["a", "b"], '{"n":1}\n')).rejects.toThrow(/line 2 is empty/);
      await expect(append(["a", "b"], '{"n":1}\n[2]')).rejects.toThrow(/line 2 is not a JSON object/);
      await expect(append(["a"], '{"n":1}', "")).rejects.toThrow(/signature is not base64url/);
      await expect(append(["a"], '{"n":1}', "a b")).rejects.toThrow(/signature is not base64url/);
      expect(() => batch([{ decisionId: "a", text: "{\n}" }])).toThrow(/line break/);
      expect(await collect(store.decisions.read())).toEqual([]);
    });

    it("filters decisions by kind and host, inside batches too", async () => {
      const record = (kind: string, host: string) =>
        JSON.stringify({ decisionId: `${kind}-${host}`, host, kind });
      await store.decisions.append(
        batch([
          { decisionId: "a", text: record("startComponent", "NA") },
          { decisionId: "b", text: record("startProvider", "NA") },
        ]),
      );
      await store.decisions.append(batch([{ decisionId: "c", text: record("startComponent", "NB") }]));
      const ids = async (filter: { kind?: string; host?: string }) =>
        (await collect(store.decisions.read(filter))).map(
          (d) => (JSON.parse(d.text) as { decisionId: string }).decisionId,
        );
      expect(await ids({ kind: "startComponent" })).toEqual(["startComponent-NA", "startComponent-NB"]);
      expect(await ids({ host: "NA" })).toEqual(["startComponent-NA", "startProvider-NA"]);
      expect(await ids({ kind: "startProvider", host: "NB" })).toEqual([]);
      expect(await ids({ kind: "performInvocation" })).toEqual([]);
    });
  });
}
