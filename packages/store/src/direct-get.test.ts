import { describe, expect, it } from "vitest";
import { readsInFlight } from "./direct-get.js";

describe("readsInFlight", () => {
  it("reads a stream of up to 16 MiB all at once, a larger one 16 MiB of the largest messages at a time", () => {
    expect(readsInFlight(512, 12_000_000, 1024 * 1024)).toBe(512);
    expect(readsInFlight(512, 16 * 1024 * 1024, 1024 * 1024)).toBe(512);
    expect(readsInFlight(512, 160_000_000, 1024 * 1024)).toBe(16);
    expect(readsInFlight(512, 160_000_000, 8 * 1024 * 1024)).toBe(2);
    expect(readsInFlight(8, 160_000_000, 512 * 1024)).toBe(8);
    expect(readsInFlight(512, 160_000_000, 64 * 1024 * 1024)).toBe(1);
  });
});
