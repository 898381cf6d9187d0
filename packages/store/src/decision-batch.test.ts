import { createSigner, generateKey, signBatch, verifySealedJson } from "@arbiter/trust";
import { describe, expect, it } from "vitest";
import {
  batchLines,
  batchRuns,
  decisionBatchFromTexts,
  decisionTexts,
  frameDecisionBatches,
  maxDecisionRecordBytes,
  sealedDecisionTexts,
  signDecisionBatch,
  splitDecisionBatches,
} from "./decision-batch.js";

const worker = createSigner(generateKey("N").seed);

describe("sealedDecisionTexts", () => {
  it("seals every line of a signed batch", () => {
    const texts = ['{"n":1}', '{"n":"ü"}', '{"n":3}'];
    const batch = decisionBatchFromTexts(
      texts.map((text, i) => ({ decisionId: `d${i}`, text })),
      worker,
    );
    const sealed = sealedDecisionTexts(batch.lines, batch.signature);
    expect(sealed).toHaveLength(3);
    for (const [i, text] of sealed.entries()) {
      expect(text.startsWith(texts[i]!.slice(0, -1))).toBe(true);
      expect(verifySealedJson(text, worker.publicKey)).toBe(true);
    }
  });

  it("returns the lines as stored when the message cannot be sealed", () => {
    const lines = Buffer.from('{"n":1}\nnot json');
    expect(sealedDecisionTexts(lines, "c2ln")).toEqual(['{"n":1}', "not json"]);
    expect(sealedDecisionTexts(Buffer.from('{"n":1}'), undefined)).toEqual(['{"n":1}']);
    expect(sealedDecisionTexts(Buffer.from('{"n":1}'), "not base64url!")).toEqual(['{"n":1}']);
    expect(sealedDecisionTexts(new Uint8Array(), "c2ln")).toEqual([""]);
  });
});

describe("decisionTexts", () => {
  it("returns every line as stored, the texts sealing starts from", () => {
    const texts = ['{"n":1}', '{"n":"ü, \\n"}', "not json", '{"n":"𝄞"}', '\uFEFF{"n":5}'];
    expect(decisionTexts(Buffer.from(texts.join("\n")))).toEqual(texts);
    expect(decisionTexts(new Uint8Array())).toEqual([""]);
    expect(decisionTexts(Buffer.from("a\n"))).toEqual(["a", ""]);
    const signed = ['{"n":1}', '{"n":"ü"}'];
    const batch = decisionBatchFromTexts(
      signed.map((text, i) => ({ decisionId: `d${i}`, text })),
      worker,
    );
    const sealed = sealedDecisionTexts(batch.lines, batch.signature);
    for (const [i, text] of decisionTexts(batch.lines).entries()) {
      expect(text).toBe(signed[i]);
      expect(sealed[i]!.startsWith(text.slice(0, -1))).toBe(true);
    }
  });
});

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

describe("signDecisionBatch and splitDecisionBatches", () => {
  it("frames one record per line, signed once, and refuses a body with a line break", () => {
    const decisions = ['{"n":1}', '{"n":2}'].map((text, i) => ({
      decisionId: `d${i}`,
      body: Buffer.from(text),
    }));
    const batch = signDecisionBatch(decisions, worker);
    expect(Buffer.from(batch.lines).toString()).toBe('{"n":1}\n{"n":2}');
    expect(batch.decisionIds).toEqual(["d0", "d1"]);
    for (const text of sealedDecisionTexts(batch.lines, batch.signature)) {
      expect(verifySealedJson(text, worker.publicKey)).toBe(true);
    }
    for (const broken of ['{"n":\n1}', '{"n":\r1}']) {
      expect(() => signDecisionBatch([{ decisionId: "x", body: Buffer.from(broken) }], worker)).toThrow(
        /line break/,
      );
    }
  });

  it("keeps each message within the server's max_payload less room for the headers", () => {
    const limit = maxDecisionRecordBytes(4096);
    expect(limit).toBeLessThan(4096);
    const body = (size: number) => ({ decisionId: "d", body: Buffer.alloc(size, 0x61) });
    expect(splitDecisionBatches([body(limit), body(1)], 4096)).toEqual([
      [0, 1],
      [1, 2],
    ]);
    expect(splitDecisionBatches([body(10), body(10)], 4096)).toEqual([[0, 2]]);
  });
});

describe("frameDecisionBatches", () => {
  const pieced = (decisionId: string, ...texts: string[]) => {
    const pieces = texts.map((t) => Buffer.from(t));
    return { decisionId, pieces, length: pieces.reduce((n, p) => n + p.length, 0) };
  };

  it("frames the batches signDecisionBatch frames of the runs splitDecisionBatches cuts", () => {
    const decisions = Array.from({ length: 40 }, (_, i) =>
      pieced(`d${i}`, `{"n":${i},`, `"pad":"${"é".repeat(40 + i)}"`, "}"),
    );
    const lines = decisions.map((d) => ({ decisionId: d.decisionId, body: Buffer.concat(d.pieces) }));
    const framed = frameDecisionBatches(decisions, 4096);
    const runs = splitDecisionBatches(lines, 4096);
    expect(runs.length).toBeGreaterThan(1);
    expect(
      framed.map((f) => [
        f.decisionIds,
        f.lines.toString(),
        signBatch(
          f.starts.map((start, i) => f.lines.subarray(start, f.ends[i])),
          worker,
        ),
      ]),
    ).toEqual(
      runs.map(([from, to]) => {
        const one = signDecisionBatch(lines.slice(from, to), worker);
        return [one.decisionIds, Buffer.from(one.lines).toString(), one.signature];
      }),
    );
  });

  it("refuses a record with a line break, and pieces that are not the length given", () => {
    expect(() => frameDecisionBatches([pieced("x", '{"n":', "\n1}")], undefined)).toThrow(/line break/);
    expect(() => frameDecisionBatches([{ ...pieced("y", '{"n":1}'), length: 3 }], undefined)).toThrow(
      /not its length/,
    );
  });
});
