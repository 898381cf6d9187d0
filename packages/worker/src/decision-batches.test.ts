import { describe, expect, it } from "vitest";
import { batchLines, batchRuns } from "./decision-batches.js";

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
  it("writes the bodies one per line, with no newline after the last", () => {
    const bodies = ['{"a":1}', '{"b":"ü"}'].map((text) => Buffer.from(text));
    const lines = batchLines(bodies);
    expect(lines.toString()).toBe('{"a":1}\n{"b":"ü"}');
    expect(lines.length + 1).toBe(bodies[0]!.length + 1 + bodies[1]!.length + 1);
    expect(batchLines([bodies[0]!]).toString()).toBe('{"a":1}');
  });
});
