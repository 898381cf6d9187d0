import { describe, expect, it } from "vitest";
import { readsInFlight } from "./direct-get.js";

describe("readsInFlight", () => {
  it("starts with a few reads, then keeps at most 16 MiB of the largest message seen in flight", () => {
    expect(readsInFlight(0, 512)).toBe(16);
    expect(readsInFlight(0, 8)).toBe(8);
    expect(readsInFlight(2_000, 512)).toBe(512);
    expect(readsInFlight(800_000, 512)).toBe(20);
    expect(readsInFlight(64 * 1024 * 1024, 512)).toBe(1);
  });
});
