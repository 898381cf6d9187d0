import { createHash } from "node:crypto";
import type { ActiveDecisionV1 } from "@arbiter/protocol";
import { describe, expect, it } from "vitest";
import { activeEntryKey, noteWritten, takeWrittenEntry } from "./active-index.js";

const sha = (text: string) => createHash("sha256").update(text).digest("base64url");
const expected = (lattice: string, host: string, cacheKey: string) =>
  `e.${sha(JSON.stringify([lattice, host]))}.${sha(cacheKey)}`;

describe("activeEntryKey", () => {
  it("is the hash of the lattice and host, then of the cache key, however often and for however many hosts", () => {
    for (let round = 0; round < 2; round++) {
      for (let h = 0; h < 5000; h += 7) {
        const host = `N${"A".repeat(50)}${h}`;
        expect(activeEntryKey({ lattice: "default", host, cacheKey: `k${h}` })).toBe(
          expected("default", host, `k${h}`),
        );
      }
    }
  });

  it("hashes a long host key each time, the same way", () => {
    const host = "H".repeat(10_000);
    for (let i = 0; i < 3; i++) {
      expect(activeEntryKey({ lattice: "l", host, cacheKey: "c" })).toBe(expected("l", host, "c"));
    }
  });

  it("tells hosts apart whose lattice and host would run together", () => {
    const a = activeEntryKey({ lattice: "ab", host: "c", cacheKey: "k" });
    const b = activeEntryKey({ lattice: "a", host: "bc", cacheKey: "k" });
    expect(a).not.toBe(b);
  });
});

describe("entries kept for the mirrors", () => {
  const entry = { requestId: "r" } as unknown as ActiveDecisionV1;

  it("are given once to the mirror that hears their write", () => {
    noteWritten("e.kept", 5, entry, 100);
    expect(takeWrittenEntry("e.kept", 4)).toBeUndefined();
    expect(takeWrittenEntry("e.kept", 5)).toBe(entry);
    expect(takeWrittenEntry("e.kept", 5)).toBeUndefined();
  });

  it("are let go once they add up to 64 MiB, however few, so entries no mirror takes do not fill the heap", () => {
    noteWritten("e.first", 1, entry, 1000);
    for (let i = 0; i < 70; i++) noteWritten(`e.large-${i}`, 10 + i, entry, 1_000_000);
    expect(takeWrittenEntry("e.first", 1)).toBeUndefined();
    expect(takeWrittenEntry("e.large-69", 79)).toBe(entry);
    noteWritten("e.huge", 100, entry, 65 * 1024 * 1024);
    expect(takeWrittenEntry("e.huge", 100)).toBeUndefined();
  });
});
