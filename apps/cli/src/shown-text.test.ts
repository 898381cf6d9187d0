import type { RevocationV1 } from "@arbiter/protocol";
import { describe, expect, it } from "vitest";
import { describeRevocation } from "./commands/revocations.js";
import { hasMisleadingCharacters, shownText } from "./shown-text.js";

describe("shownText", () => {
  it("writes control and bidirectional characters as escapes and leaves other text alone", () => {
    expect(shownText("NABC\u202eFED\u2066\u0000\u001b[2J\u009b")).toBe(
      "NABC\\u202eFED\\u2066\\u0000\\u001b[2J\\u009b",
    );
    expect(shownText("ghcr.io/acme/ünïcode:1 — fine")).toBe("ghcr.io/acme/ünïcode:1 — fine");
  });

  it("cuts a value past 256 characters to 200 and its length, never half a surrogate pair", () => {
    expect(shownText("a".repeat(256))).toBe("a".repeat(256));
    expect(shownText("a".repeat(257))).toBe(`${"a".repeat(200)}… (257 characters)`);
    expect(shownText(`${"a".repeat(199)}😀${"b".repeat(100)}`)).toBe(`${"a".repeat(199)}… (301 characters)`);
  });
});

describe("revocations list's lines", () => {
  it("keep escape sequences a host put in its request off the terminal", () => {
    const r: RevocationV1 = {
      requestId: "id\u001b]52;c;ZWNobyBoaQ==\u0007",
      lattice: "default",
      host: "N\u001b[2J",
      cacheKey: "startComponent:M\u202e1",
      from: { permitted: true, message: null },
      to: { permitted: false, message: "denied \u001b[31mred" },
      revision: 4,
      at: "2026-01-01T00:00:00.000Z",
    };
    const line = describeRevocation(r);
    expect(hasMisleadingCharacters(line)).toBe(false);
    expect(line).toContain("N\\u001b[2J");
    expect(line).toContain("M\\u202e1");
  });
});
