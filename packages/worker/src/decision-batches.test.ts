import { describe, expect, it } from "vitest";
import { batchLines, batchRuns, lineSize } from "./decision-batches.js";

describe("batchRuns", () => {
  it("keeps every message within the limit, in order, covering every line", () => {
    expect(batchRuns([], 100)).toEqual([]);
    expect(batchRuns([10, 10, 10], 100)).toEqual([[0, 3]]);
    // 40 + 40 + 21 - 1 (no newline after the last line) = 100 fits; one more byte does not.
    expect(batchRuns([40, 40, 21], 100)).toEqual([[0, 3]]);
    expect(batchRuns([40, 40, 22], 100)).toEqual([
      [0, 2],
      [2, 3],
    ]);
    expect(batchRuns([60, 60, 60, 10], 100)).toEqual([
      [0, 1],
      [1, 2],
      [2, 4],
    ]);
  });

  it("gives a line larger than the limit a message of its own", () => {
    expect(batchRuns([10, 500, 10], 100)).toEqual([
      [0, 1],
      [1, 2],
      [2, 3],
    ]);
  });
});

describe("batchLines", () => {
  it("writes each body with its seal in place of its final brace, one per line", () => {
    const bodies = ['{"a":1}', '{"b":"ü"}'].map((text) => Buffer.from(text));
    const seals = [',"signature":"s1"}', ',"signature":"s2"}'];
    const lines = batchLines(bodies, seals);
    expect(lines.toString()).toBe('{"a":1,"signature":"s1"}\n{"b":"ü","signature":"s2"}');
    expect(lines.length + 1).toBe(lineSize(bodies[0]!, seals[0]!) + lineSize(bodies[1]!, seals[1]!));
  });
});
