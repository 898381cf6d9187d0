import type { ActiveDecisionV1 } from "@arbiter/protocol";
import type { Evaluation } from "@arbiter/rules";
import { describe, expect, it, vi } from "vitest";
import { overrideFor, revocationFor } from "./active-projection.js";
import { overrideBytes, prepareChangeTexts, revocationText } from "./change-texts.js";

const odd = [
  'quote " and \\ backslash',
  "line\u2028separator\u2029",
  "lone \ud800 surrogate",
  "é 中 🎉",
  "\u0000\u001f",
];

function entry(i: number, request: unknown = { n: i }): ActiveDecisionV1 {
  const text = odd[i % odd.length]!;
  return {
    lattice: `lattice ${text}`,
    host: `N${i} ${text}`,
    cacheKey: `{"k":${i}} ${text}`,
    requestId: `req-${i}-${text}`,
    kind: "startComponent",
    permitted: i % 2 === 0,
    message: `was ${text}`,
    revision: 3,
    decisionId: `d${i}`,
    seq: i + 1,
    evaluatedAt: "2026-12-01T10:00:00.000Z",
    rejection: null,
    request,
    trust: { verified: false, reasons: [] },
    expiresAt: null,
  };
}

function evaluation(i: number): Evaluation {
  return {
    permitted: i % 3 === 0,
    message: `now ${odd[(i + 1) % odd.length]}`,
    decidingRule: null,
    matchedRules: [],
    dryRunRules: [],
    errors: [],
  };
}

describe("the texts of a changed entry", () => {
  it("are JSON.stringify of the override and the revocation record, byte for byte", () => {
    for (let i = 0; i < 20; i++) {
      const e = entry(i);
      // Twice: the second time from the pieces kept for the entry's request.
      for (let round = 0; round < 2; round++) {
        const ev = evaluation(i);
        expect(overrideBytes(e, ev).equals(Buffer.from(JSON.stringify(overrideFor(e, ev))))).toBe(true);
        const at = "2026-12-01T10:00:01.000Z";
        expect(revocationText(e, ev, 7, at)).toBe(JSON.stringify(revocationFor(e, ev, 7, at)));
      }
    }
  });

  it("never take the pieces of another entry that holds the same request object", () => {
    const shared = { same: true };
    const first = entry(1, shared);
    const second = { ...entry(2, shared) };
    const ev = evaluation(4);
    overrideBytes(first, ev);
    expect(overrideBytes(second, ev).toString()).toBe(JSON.stringify(overrideFor(second, ev)));
    expect(revocationText(second, ev, 1, "x")).toBe(JSON.stringify(revocationFor(second, ev, 1, "x")));
  });

  it("write a request that is not an object (cut for size) like any other", () => {
    const e = entry(3, "cut");
    const ev = evaluation(3);
    expect(overrideBytes(e, ev).toString()).toBe(JSON.stringify(overrideFor(e, ev)));
  });

  it("of a scan's run serialize its outcome before and after, and its time, once for all its records", () => {
    // A revocation record writes two outcomes: one kept outcome served only one of them, and every
    // record serialized both again, and the time.
    const run = Array.from({ length: 100 }, (_, i) => ({ ...entry(i), permitted: false, message: "denied" }));
    for (const e of run) prepareChangeTexts(e);
    const ev = { ...evaluation(0), permitted: true, message: "permitted" };
    const at = "2026-12-01T10:00:01.000Z";
    const stringify = vi.spyOn(JSON, "stringify");
    let texts: string[];
    try {
      texts = run.map((e) => revocationText(e, ev, 7, at));
      for (const e of run) overrideBytes(e, ev);
      expect(stringify.mock.calls.length).toBeLessThanOrEqual(3);
    } finally {
      stringify.mockRestore();
    }
    expect(texts).toEqual(run.map((e) => JSON.stringify(revocationFor(e, ev, 7, at))));
  });
});
