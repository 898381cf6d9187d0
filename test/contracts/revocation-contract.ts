import type { ActiveDecisionV1, RevocationV1, ScanReportV1 } from "@arbiter/protocol";
import {
  type ActiveIndex,
  activeEntryKey,
  isStoreUnavailableError,
  type RevocationLog,
  type StoredRevocation,
} from "@arbiter/store";
import { describe, expect, it } from "vitest";

/** Makes a fresh, empty active index and revocation log for each test. */
export interface RevocationStoresFactory {
  createIndex(): Promise<ActiveIndex>;
  /** A fresh, empty log; with `maxPayload`, on a server (or a twin of one) with that max_payload. */
  createLog(options?: { readonly maxPayload?: number }): Promise<RevocationLog>;
  /** Stores `text` as one message of `log`, as anyone who may publish revocations could (a worker's credential). */
  storeRaw(log: RevocationLog, text: string): Promise<void>;
}

/** The max_payload of the small server the split cases run on. */
const SMALL_MAX_PAYLOAD = 8192;

function entry(overrides: Partial<ActiveDecisionV1> = {}): ActiveDecisionV1 {
  return {
    lattice: "default",
    host: "NHOST",
    cacheKey: "startComponent:a_ghcr.io/a:1",
    requestId: "r1",
    kind: "startComponent",
    permitted: false,
    message: "denied",
    revision: 2,
    decisionId: "d1",
    seq: 1,
    evaluatedAt: "2026-01-01T00:00:00.000Z",
    rejection: null,
    request: { requestId: "r1" },
    trust: { verified: false, reasons: [] },
    expiresAt: null,
    ...overrides,
  };
}

/** A revocation record for the stores' tests, with `overrides` applied. */
export function revocation(overrides: Partial<RevocationV1> = {}): RevocationV1 {
  return {
    requestId: "r1",
    lattice: "default",
    host: "NHOST",
    cacheKey: "startComponent:a_ghcr.io/a:1",
    from: { permitted: false, message: "denied" },
    to: { permitted: true, message: "allowed" },
    revision: 3,
    at: "2026-01-01T00:00:01.000Z",
    ...overrides,
  };
}

function scanReport(overrides: Partial<ScanReportV1> = {}): ScanReportV1 {
  return {
    revision: 3,
    deployment: "AAAAAAAAAAAAAAAAAAAAAAAAAA",
    event: "c".repeat(64),
    entries: 10,
    changed: 4,
    overrides: 4,
    startedAt: "2026-01-01T00:00:01.000Z",
    finishedAt: "2026-01-01T00:00:01.050Z",
    worker: { id: "w1", publicKey: `N${"A".repeat(55)}` },
    ...overrides,
  };
}

async function collect<T>(iterable: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of iterable) out.push(item);
  return out;
}

/**
 * The behaviour every active index and revocation log must have; the in-memory twins (unit tests)
 * and the JetStream ones (integration tests) both run it.
 */
export function describeRevocationStoresContract(name: string, factory: RevocationStoresFactory): void {
  describe(`active index contract: ${name}`, () => {
    it("keeps one entry per lattice, host and cache key, any bytes in them", async () => {
      const index = await factory.createIndex();
      const odd = { host: "N.*>\u00e9 space", cacheKey: "startComponent:x_y.z:1 *> \u0000" };
      expect(await index.get(entry(odd))).toBeNull();
      await index.put(entry(odd));
      await index.put(entry({ ...odd, requestId: "r2", seq: 2 }));
      await index.put(entry({ host: "NOTHER" }));
      expect(await index.get(entry(odd))).toMatchObject({ requestId: "r2", seq: 2 });
      expect((await collect(index.entries())).map((e) => e.requestId).sort()).toEqual(["r1", "r2"]);
      expect(await collect(index.entries({ lattice: "default", host: "NOTHER" }))).toMatchObject([
        { host: "NOTHER" },
      ]);
      await index.delete(entry(odd));
      expect(await index.get(entry(odd))).toBeNull();
      await index.close();
    });

    it("lists its keys sorted and reads them back in that order, leaving deleted entries out", async () => {
      const index = await factory.createIndex();
      const hosts = ["NA", "NB", "NC"];
      for (const host of hosts) {
        for (const c of ["x", "y"]) await index.put(entry({ host, cacheKey: c, requestId: `${host}-${c}` }));
      }
      await index.delete(entry({ host: "NB", cacheKey: "y" }));
      const keys = await index.keys();
      expect(keys).toEqual([...keys].sort());
      expect(keys).toContain(activeEntryKey(entry({ host: "NA", cacheKey: "x" })));
      const read = await collect(index.entriesOf(keys));
      expect(read.map((e) => e.requestId).sort()).toEqual(["NA-x", "NA-y", "NB-x", "NC-x", "NC-y"]);
      expect(read.map((e) => activeEntryKey(e))).toEqual(
        keys.filter((k) => read.some((e) => activeEntryKey(e) === k)),
      );
      // A key with no entry (never put) is left out too.
      const missing = activeEntryKey(entry({ host: "NGONE" }));
      expect(await collect(index.entriesOf([missing]))).toEqual([]);
      await index.close();
    });

    it("gives a request id to the first decision that claims it, and to no other", async () => {
      const index = await factory.createIndex();
      expect(await index.claimRequestId("r1", entry())).toBe(true);
      expect(await index.claimRequestId("r1", entry())).toBe(true);
      expect(await index.claimRequestId("r1", entry({ host: "NATTACKER" }))).toBe(false);
      expect(await index.claimRequestId("r1", entry({ cacheKey: "other" }))).toBe(false);
      expect(await index.claimRequestId("r2", entry({ host: "NATTACKER" }))).toBe(true);
      // The same entry under another decision: a copy of the id, not the host's request.
      expect(await index.claimRequestId("r1", entry({ decisionId: "d2" }))).toBe(false);
      await index.close();
    });

    it("keeps one scan report per revision, apart from the entries", async () => {
      const index = await factory.createIndex();
      expect(await index.readScanReport(3)).toBeNull();
      await index.put(entry());
      await index.putScanReport(scanReport());
      await index.putScanReport(scanReport({ revision: 4, entries: 11, changed: 0, overrides: 0 }));
      expect(await index.readScanReport(3)).toEqual(scanReport());
      expect(await index.readScanReport(4)).toMatchObject({ revision: 4, overrides: 0 });
      expect(await index.readScanReport(5)).toBeNull();
      // A scan done again (the revision redelivered) replaces the report.
      await index.putScanReport(scanReport({ finishedAt: "2026-01-01T00:00:02.000Z" }));
      expect(await index.readScanReport(3)).toMatchObject({ finishedAt: "2026-01-01T00:00:02.000Z" });
      expect((await collect(index.entries())).map((e) => e.requestId)).toEqual(["r1"]);
      await index.close();
    });

    it("replaces an entry only while its key still holds the entry read", async () => {
      const index = await factory.createIndex();
      await index.put(entry({ host: "NA" }));
      await index.put(entry({ host: "NB" }));
      const [a, b] = await collect(
        index.entriesOf([activeEntryKey(entry({ host: "NA" })), activeEntryKey(entry({ host: "NB" }))]),
      );
      if (a === undefined || b === undefined) throw new Error("entries not read back");
      // NA asks again meanwhile (a newer request under the same key); NB is pruned.
      await index.put(entry({ host: "NA", requestId: "r-newer", seq: 9 }));
      await index.delete(b);
      expect(await index.replace({ ...a, permitted: true, message: "allowed", revision: 3 }, a)).toBe(false);
      expect(await index.replace({ ...b, permitted: true, message: "allowed", revision: 3 }, b)).toBe(false);
      expect(await index.get(a)).toMatchObject({ requestId: "r-newer", permitted: false });
      expect(await index.get(b)).toBeNull();
      const [again] = await collect(index.entriesOf([activeEntryKey(a)]));
      if (again === undefined) throw new Error("entry not read back");
      expect(await index.replace({ ...again, permitted: true, message: "allowed", revision: 3 }, again)).toBe(
        true,
      );
      expect(await index.get(a)).toMatchObject({ requestId: "r-newer", permitted: true, revision: 3 });
      await index.close();
    });
  });

  describe(`revocation log contract: ${name}`, () => {
    it("stores records in order, once per id, and filters them by host and time", async () => {
      const log = await factory.createLog();
      const before = new Date(Date.now() - 1000);
      expect(await log.append(revocation(), "3:a")).toMatchObject({ duplicate: false });
      expect(await log.append(revocation(), "3:a")).toMatchObject({ duplicate: true });
      await log.append(revocation({ host: "NOTHER", requestId: "r2" }), "3:b");
      const all: StoredRevocation[] = await collect(log.read());
      expect(all.map((s) => s.record.requestId)).toEqual(["r1", "r2"]);
      expect(all[0]!.seq).toBeLessThan(all[1]!.seq);
      expect((await collect(log.read({ host: "NOTHER" }))).map((s) => s.record.requestId)).toEqual(["r2"]);
      expect(await collect(log.read({ since: before }))).toHaveLength(2);
      expect(await collect(log.read({ since: new Date(Date.now() + 60_000) }))).toEqual([]);
    });

    it("stores a batch in one message, its records in order, and filters them record by record", async () => {
      const log = await factory.createLog();
      const hosts = ["NA", "NB", "NA", "NC", "NA"];
      const entries = hosts.map((host, i) => ({
        record: revocation({ host, requestId: `r${i}` }),
        id: `3:e${i}`,
      }));
      const written = await log.appendBatch(entries);
      expect(written).toMatchObject([{ records: 5, duplicate: false }]);
      const all = await collect(log.read());
      expect(all.map((s) => s.record)).toEqual(entries.map((e) => e.record));
      expect(new Set(all.map((s) => s.seq))).toEqual(new Set([written[0]!.seq]));
      expect((await collect(log.read({ host: "NA" }))).map((s) => s.record.requestId)).toEqual([
        "r0",
        "r2",
        "r4",
      ]);
      expect(await log.appendBatch([])).toEqual([]);
    });

    it("stores the texts a writer gives with its records, as the records themselves", async () => {
      const log = await factory.createLog();
      const entries = ["NA", "NB"].map((host, i) => {
        const record = revocation({ host, requestId: `r${i} \u2028 "é"` });
        return { record, id: `3:t${i}`, text: JSON.stringify(record) };
      });
      expect(await log.appendBatch(entries)).toMatchObject([{ records: 2, duplicate: false }]);
      expect((await collect(log.read())).map((s) => s.record)).toEqual(entries.map((e) => e.record));
    });

    it("stores a batch written again once, and a batch of one once beside the same single record", async () => {
      const log = await factory.createLog();
      const entries = [0, 1, 2].map((i) => ({ record: revocation({ requestId: `r${i}` }), id: `3:e${i}` }));
      expect(await log.appendBatch(entries)).toMatchObject([{ duplicate: false }]);
      // A scan done again makes the same records at another time.
      const again = entries.map((e) => ({ ...e, record: { ...e.record, at: "2026-01-01T00:00:09.000Z" } }));
      expect(await log.appendBatch(again)).toMatchObject([{ duplicate: true }]);
      expect(await log.append(revocation({ requestId: "r9" }), "3:e9")).toMatchObject({ duplicate: false });
      expect(await log.appendBatch([{ record: revocation({ requestId: "r9" }), id: "3:e9" }])).toMatchObject([
        { duplicate: true },
      ]);
      // Other ids are another batch, stored again: what a scan that cut its chunks otherwise writes.
      expect(await log.appendBatch(entries.slice(1))).toMatchObject([{ duplicate: false }]);
      expect((await collect(log.read())).map((s) => s.record.requestId)).toEqual([
        "r0",
        "r1",
        "r2",
        "r9",
        "r1",
        "r2",
      ]);
    });

    it("splits a batch over max_payload into as few messages as fit, each stored once", async () => {
      const log = await factory.createLog({ maxPayload: SMALL_MAX_PAYLOAD });
      const entries = Array.from({ length: 100 }, (_, i) => ({
        record: revocation({ requestId: `r${i}`, cacheKey: `startComponent:c${i}_${"x".repeat(200)}` }),
        id: `3:e${i}`,
      }));
      const size = Buffer.byteLength(JSON.stringify(entries[0]!.record));
      const written = await log.appendBatch(entries);
      expect(written.length).toBeGreaterThan(1);
      // Room for headers aside, each message is filled before the next begins.
      expect(written.length).toBeLessThanOrEqual(
        Math.ceil((entries.length * (size + 1)) / (SMALL_MAX_PAYLOAD - 2048)),
      );
      expect(written.reduce((sum, w) => sum + w.records, 0)).toBe(entries.length);
      const all = await collect(log.read());
      expect(all.map((s) => s.record)).toEqual(entries.map((e) => e.record));
      expect(new Set(all.map((s) => s.seq)).size).toBe(written.length);
      expect((await log.appendBatch(entries)).every((w) => w.duplicate)).toBe(true);
      expect(await collect(log.read())).toHaveLength(entries.length);
    });

    it("fills messages up to max_payload whatever the records' sizes, never over it", async () => {
      const log = await factory.createLog({ maxPayload: SMALL_MAX_PAYLOAD });
      // Sizes that land a message's end on every byte around the limit, multi-byte characters included.
      const entries = Array.from({ length: 120 }, (_, i) => ({
        record: revocation({
          requestId: `r${i}`,
          cacheKey: `startComponent:${"é".repeat((i * 37) % 1500)}${"x".repeat((i * 53) % 700)}`,
        }),
        id: `3:e${i}`,
      }));
      const written = await log.appendBatch(entries);
      expect(written.reduce((sum, w) => sum + w.records, 0)).toBe(entries.length);
      const all = await collect(log.read());
      expect(all.map((s) => s.record.requestId)).toEqual(entries.map((e) => e.record.requestId));
      // Greedy: two neighbouring messages would not have fit in one.
      const sizes = entries.map((e) => Buffer.byteLength(JSON.stringify(e.record)) + 1);
      let at = 0;
      for (const [i, w] of written.entries()) {
        const bytes = sizes.slice(at, at + w.records).reduce((a, b) => a + b, 0);
        if (i + 1 < written.length)
          expect(bytes + sizes[at + w.records]!).toBeGreaterThan(SMALL_MAX_PAYLOAD - 1100);
        at += w.records;
      }
    });

    it("refuses a batch holding a record no message can hold, storing none of it", async () => {
      const log = await factory.createLog({ maxPayload: SMALL_MAX_PAYLOAD });
      const huge = revocation({
        requestId: "huge",
        cacheKey: `startComponent:${"x".repeat(SMALL_MAX_PAYLOAD)}`,
      });
      const entries = [revocation({ requestId: "a" }), huge, revocation({ requestId: "b" })].map(
        (record, i) => ({
          record,
          id: `3:e${i}`,
        }),
      );
      const refused = await log.appendBatch(entries).then(
        () => null,
        (err: unknown) => err,
      );
      expect(isStoreUnavailableError(refused)).toBe(true);
      expect(String(refused)).toMatch(/revocation record of request "huge" is \d+ bytes/);
      expect(await collect(log.read())).toEqual([]);
    });

    it("reads single records and batches side by side, skipping what does not parse", async () => {
      const log = await factory.createLog();
      await log.append(revocation({ requestId: "old" }), "3:old");
      await factory.storeRaw(
        log,
        JSON.stringify({
          revocations: [
            revocation({ requestId: "kept1" }),
            { ...revocation({ requestId: "bad-revision" }), revision: -1 },
            42,
            null,
            [revocation({ requestId: "nested" })],
            revocation({ requestId: "kept2", host: "NOTHER" }),
          ],
        }),
      );
      for (const text of [
        "not json",
        "{}",
        JSON.stringify({ revocations: [] }),
        JSON.stringify({ revocations: "kept?" }),
        JSON.stringify({ revocations: { 0: revocation({ requestId: "object" }) } }),
        JSON.stringify([revocation({ requestId: "array" })]),
      ]) {
        await factory.storeRaw(log, text);
      }
      await log.appendBatch([{ record: revocation({ requestId: "new" }), id: "4:new" }]);
      const all = await collect(log.read());
      expect(all.map((s) => s.record.requestId)).toEqual(["old", "kept1", "kept2", "new"]);
      expect(all[1]!.seq).toBe(all[2]!.seq);
      expect(all[0]!.seq).toBeLessThan(all[1]!.seq);
      expect(all[2]!.seq).toBeLessThan(all[3]!.seq);
      expect((await collect(log.read({ host: "NOTHER" }))).map((s) => s.record.requestId)).toEqual(["kept2"]);
    });
  });
}
