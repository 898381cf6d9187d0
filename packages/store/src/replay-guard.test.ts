import { describe, expect, it } from "vitest";
import { createMemoryReplayGuard } from "./replay-guard.js";

describe("createMemoryReplayGuard", () => {
  it("lets the first claim of an id win until the window has passed", async () => {
    let now = 1_000;
    const guard = createMemoryReplayGuard(60_000, () => now);
    expect(await guard.claim("a")).toBe(true);
    expect(await guard.claim("a")).toBe(false);
    expect(await guard.claim("b")).toBe(true);
    now += 59_999;
    expect(await guard.claim("a")).toBe(false);
    now += 1;
    expect(await guard.claim("a")).toBe(true);
    expect(await guard.claim("a")).toBe(false);
  });
});
