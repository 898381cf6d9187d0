import { createMemoryActiveIndex } from "@arbiter/store";
import { describe, expect, it } from "vitest";
import { indexHostRecords, isPrunedDecision, withoutPrunedHosts } from "./host-lifecycle.js";

const STOP = "2026-12-02T04:00:00.000Z";

async function indexWithTombstone() {
  const index = createMemoryActiveIndex();
  const written = await index.putHost(
    { lattice: "default", host: "NGONE", lastSeenAt: null, stoppedAt: STOP, pruned: true },
    null,
  );
  expect(written).toBe(true);
  return index;
}

describe("the tombstone of a pruned host", () => {
  it("keeps out that host's decisions evaluated until its stop, not later ones, nor other hosts'", async () => {
    const index = await indexWithTombstone();
    const ref = (host: string, evaluatedAt: string) => ({ lattice: "default", host, evaluatedAt });
    expect(await isPrunedDecision(index, ref("NGONE", "2026-12-02T03:59:59.999Z"))).toBe(true);
    expect(await isPrunedDecision(index, ref("NGONE", STOP))).toBe(true);
    expect(await isPrunedDecision(index, ref("NGONE", "2026-12-02T04:00:00.001Z"))).toBe(false);
    expect(await isPrunedDecision(index, ref("NLIVE", "2026-12-02T03:00:00.000Z"))).toBe(false);
    expect(
      await isPrunedDecision(index, { ...ref("NGONE", "2026-12-02T03:00:00.000Z"), lattice: "other" }),
    ).toBe(false);
    const changed = [
      { id: 1, entry: ref("NGONE", "2026-12-02T03:00:00.000Z") },
      { id: 2, entry: ref("NLIVE", "2026-12-02T03:00:00.000Z") },
      { id: 3, entry: ref("NGONE", "2026-12-02T05:00:00.000Z") },
    ];
    expect(
      (await withoutPrunedHosts(indexHostRecords(index), changed, (c) => c.entry)).map((c) => c.id),
    ).toEqual([2, 3]);
  });

  it("is written by compare-and-set: a writer that read an older revision loses", async () => {
    const index = await indexWithTombstone();
    const stored = await index.getHost("default", "NGONE");
    if (stored === null) throw new Error("no record");
    const seen = { ...stored.record, lastSeenAt: "2026-12-02T04:10:00.000Z" };
    expect(await index.putHost(seen, stored.revision)).toBe(true);
    expect(await index.putHost({ ...stored.record, pruned: false }, stored.revision)).toBe(false);
    expect(await index.putHost(seen, null)).toBe(false);
    expect((await index.getHost("default", "NGONE"))?.record.lastSeenAt).toBe("2026-12-02T04:10:00.000Z");
    expect(await index.deleteHost("default", "NGONE", stored.revision)).toBe(false);
  });
});
