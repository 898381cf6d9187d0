import { afterEach, describe, expect, it } from "vitest";
import { describeRetentionChange, resolveRetention } from "./retention.js";

const saved = {
  age: process.env["ARBITER_DECISIONS_MAX_AGE"],
  bytes: process.env["ARBITER_DECISIONS_MAX_BYTES"],
};

afterEach(() => {
  for (const [name, value] of [
    ["ARBITER_DECISIONS_MAX_AGE", saved.age],
    ["ARBITER_DECISIONS_MAX_BYTES", saved.bytes],
  ] as const) {
    if (value === undefined) delete process.env[name];
    else process.env[name] = value;
  }
});

describe("the decision stream's retention from flags and the environment", () => {
  it("says nothing when neither is set, so an existing stream is left as it is", () => {
    delete process.env["ARBITER_DECISIONS_MAX_AGE"];
    delete process.env["ARBITER_DECISIONS_MAX_BYTES"];
    expect(resolveRetention({})).toBeUndefined();
  });

  it("reads ages and sizes, flags before the environment, 0 for none", () => {
    process.env["ARBITER_DECISIONS_MAX_AGE"] = "7d";
    process.env["ARBITER_DECISIONS_MAX_BYTES"] = "512M";
    expect(resolveRetention({})).toEqual({ maxAgeMs: 7 * 86_400_000, maxBytes: 512 * 1024 ** 2 });
    expect(resolveRetention({ decisionsMaxAge: "90s", decisionsMaxBytes: "0" })).toEqual({
      maxAgeMs: 90_000,
      maxBytes: 0,
    });
    expect(resolveRetention({ decisionsMaxAge: "0", decisionsMaxBytes: "2g" })).toEqual({
      maxAgeMs: 0,
      maxBytes: 2 * 1024 ** 3,
    });
  });

  it("refuses what is no age or size, naming the flag or the variable", () => {
    expect(() => resolveRetention({ decisionsMaxAge: "soon" })).toThrow(/--decisions-max-age "soon"/);
    expect(() => resolveRetention({ decisionsMaxAge: "0s" })).toThrow(/--decisions-max-age/);
    expect(() => resolveRetention({ decisionsMaxBytes: "1.5G" })).toThrow(/--decisions-max-bytes "1.5G"/);
    process.env["ARBITER_DECISIONS_MAX_BYTES"] = "lots";
    expect(() => resolveRetention({})).toThrow(
      expect.objectContaining({
        code: "INVALID_CONFIG",
        message: expect.stringContaining("ARBITER_DECISIONS_MAX_BYTES"),
      }),
    );
  });

  it("says what a change did, and nothing when the limits were already those", () => {
    const before = { maxAgeMs: 0, maxBytes: 0 };
    expect(
      describeRetentionChange("ARBITER_DECISIONS", { before, after: { maxAgeMs: 60_000, maxBytes: 0 } }),
    ).toBe(
      "the retention of ARBITER_DECISIONS changed from no max age, no max bytes to max age 60s, no max bytes: the oldest decisions age out past them",
    );
    expect(
      describeRetentionChange("ARBITER_DECISIONS", {
        before: { maxAgeMs: 1000, maxBytes: 0 },
        after: before,
      }),
    ).toBe(
      "the retention of ARBITER_DECISIONS changed from max age 1s, no max bytes to no max age, no max bytes",
    );
    expect(describeRetentionChange("ARBITER_DECISIONS", { before, after: before })).toBeNull();
    expect(describeRetentionChange("ARBITER_DECISIONS", undefined)).toBeNull();
  });
});
