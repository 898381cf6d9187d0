import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { activeEntryKey } from "./active-index.js";

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
