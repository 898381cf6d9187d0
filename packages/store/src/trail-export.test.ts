import { describe, expect, it } from "vitest";
import {
  decisionLine,
  parseTrailLine,
  retentionLine,
  ruleEventLine,
  TRAIL_EXPORT_FORMAT,
  trailHeaderLine,
} from "./trail-export.js";

const time = new Date("2026-01-02T03:04:05.000Z");

describe("the export's line format", () => {
  it("keeps a record's text byte for byte, even when it holds the envelope's member names", () => {
    const text = '{"decisionId":"d","request":{"record":{"x":1},"event":"}"},"n":1.50,"signature":"s"}';
    const line = decisionLine("ARBITER_DECISIONS", 7, 2, time, text);
    expect(JSON.parse(line)).toMatchObject({
      stream: "ARBITER_DECISIONS",
      seq: 7,
      index: 2,
      time: time.toISOString(),
    });
    expect(parseTrailLine(line)).toEqual({
      kind: "decision",
      stream: "ARBITER_DECISIONS",
      seq: 7,
      index: 2,
      time,
      text,
    });
    const event = '{"type":"deployment.created","payload":{},"signature":"s"}';
    expect(parseTrailLine(ruleEventLine("ARBITER_RULES", 1, time, event))).toEqual({
      kind: "rule",
      stream: "ARBITER_RULES",
      seq: 1,
      time,
      text: event,
    });
  });

  it("reads the header and the retention line, and refuses what is none of them", () => {
    const header = {
      format: TRAIL_EXPORT_FORMAT,
      exportedAt: time.toISOString(),
      prefix: "arbiter",
      since: null,
      until: null,
      rules: { name: "ARBITER_RULES", firstSeq: 1, lastSeq: 3 },
      decisions: { name: "ARBITER_DECISIONS", firstSeq: 5, lastSeq: 9 },
    } as const;
    expect(parseTrailLine(trailHeaderLine(header))).toEqual({ kind: "header", header });
    expect(parseTrailLine(retentionLine("ARBITER_DECISIONS", 6))).toEqual({
      kind: "retention",
      stream: "ARBITER_DECISIONS",
      retainedFrom: 6,
    });
    for (const line of [
      "not json",
      "[1]",
      '{"format":"other"}',
      '{"stream":"ARBITER_DECISIONS","seq":0,"index":0,"time":"2026-01-02T03:04:05.000Z","record":{}}',
      '{"stream":"A B","seq":1,"time":"2026-01-02T03:04:05.000Z","event":{}}',
      '{"stream":"ARBITER_RULES","seq":1,"time":"yesterday","event":{}}',
    ]) {
      expect(parseTrailLine(line).kind, line).toBe("invalid");
    }
  });
});
