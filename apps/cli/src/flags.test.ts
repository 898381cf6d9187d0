import { describe, expect, it } from "vitest";
import { parseIntegerFlag, parseOptionalIntegerFlag } from "./flags.js";

describe("parseIntegerFlag", () => {
  it("accepts decimal integers within the bounds", () => {
    expect(parseIntegerFlag("42", "--limit", { min: 1 })).toBe(42);
    expect(parseIntegerFlag(" 7 ", "--limit")).toBe(7);
    expect(parseIntegerFlag("-1", "--port", { min: -1, max: 65535 })).toBe(-1);
    expect(parseOptionalIntegerFlag(undefined, "--revision")).toBeUndefined();
  });

  it.each(["abc", "", " ", "1.5", "1e3", "0x10", "12abc", "Infinity", "99999999999999999999"])(
    "refuses %j naming the flag",
    (value) => {
      expect(() => parseIntegerFlag(value, "--limit", { min: 1 })).toThrow(/--limit/);
    },
  );

  it("refuses values outside the bounds with the range in the message", () => {
    expect(() => parseIntegerFlag("0", "--limit", { min: 1 })).toThrow(
      /--limit "0": expected an integer of 1 or more/,
    );
    expect(() => parseIntegerFlag("70", "--workers", { min: 1, max: 64 })).toThrow(/from 1 to 64/);
  });

  it("throws an INVALID_CONFIG ArbiterError", () => {
    expect(() => parseIntegerFlag("x", "--limit")).toThrow(
      expect.objectContaining({ code: "INVALID_CONFIG" }),
    );
  });
});
