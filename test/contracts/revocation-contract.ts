import type { ActiveDecisionV1, RevocationV1, ScanReportV1 } from "@arbiter/protocol";
import { type ActiveIndex, activeEntryKey, type RevocationLog, type StoredRevocation } from "@arbiter/store";
import { describe, expect, it } from "vitest";

/** Makes a fresh, empty active index and revocation log for each test. */
export interface RevocationStoresFactory {
  createIndex(): Promise<ActiveIndex>;
  createLog(): Promise<RevocationLog>;
}

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

function revocation(overrides: Partial<RevocationV1> = {}): RevocationV1 {
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

    it("gives a request id to the first entry that claims it, and to no other", async () => {
      const index = await factory.createIndex();
      expect(await index.claimRequestId("r1", entry())).toBe(true);
      expect(await index.claimRequestId("r1", entry())).toBe(true);
      expect(await index.claimRequestId("r1", entry({ host: "NATTACKER" }))).toBe(false);
      expect(await index.claimRequestId("r1", entry({ cacheKey: "other" }))).toBe(false);
      expect(await index.claimRequestId("r2", entry({ host: "NATTACKER" }))).toBe(true);
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
  });
}
