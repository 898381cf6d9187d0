import { z } from "zod";
import { parseJsonOrNull } from "./text.js";

/** The `format` of an export's first line. */
export const TRAIL_EXPORT_FORMAT = "arbiter-trail-v1";

const StreamBounds = z.object({
  name: z.string().regex(/^[A-Za-z0-9_-]+$/),
  /** The stream's first sequence when the export started: what came before is past retention. */
  firstSeq: z.number().int().nonnegative(),
  /** The stream's last sequence when the export started: the export reads up to it. */
  lastSeq: z.number().int().nonnegative(),
});

/** The first line of an export: what it holds, and the streams' bounds when it was made. */
export const TrailExportHeader = z.object({
  format: z.literal(TRAIL_EXPORT_FORMAT),
  exportedAt: z.iso.datetime({ offset: true }),
  prefix: z.string(),
  /** The window of decisions asked for (ISO-8601), null for an open end. */
  since: z.iso.datetime({ offset: true }).nullable(),
  until: z.iso.datetime({ offset: true }).nullable(),
  rules: StreamBounds,
  decisions: StreamBounds,
});
export type TrailExportHeader = z.infer<typeof TrailExportHeader>;

const StreamName = z.string().regex(/^[A-Za-z0-9_-]+$/);

const RuleLineEnvelope = z.object({
  stream: StreamName,
  seq: z.number().int().positive(),
  time: z.iso.datetime({ offset: true }),
  event: z.record(z.string(), z.unknown()),
});

const DecisionLineEnvelope = z.object({
  stream: StreamName,
  seq: z.number().int().positive(),
  index: z.number().int().nonnegative(),
  time: z.iso.datetime({ offset: true }),
  record: z.record(z.string(), z.unknown()),
});

/** One line of an export, read. `text` is the record's exact stored (or sealed) text. */
export type TrailExportLine =
  | { readonly kind: "header"; readonly header: TrailExportHeader }
  | {
      readonly kind: "rule";
      readonly stream: string;
      readonly seq: number;
      readonly time: Date;
      readonly text: string;
    }
  | {
      readonly kind: "decision";
      readonly stream: string;
      readonly seq: number;
      readonly index: number;
      readonly time: Date;
      readonly text: string;
    }
  | { readonly kind: "retention"; readonly stream: string; readonly retainedFrom: number }
  | { readonly kind: "invalid"; readonly reason: string };

const RetentionLine = z.object({ stream: StreamName, retainedFrom: z.number().int().positive() });

/**
 * The last line of an export whose stream aged records out while it was written: its first
 * sequence then, so the records between the header's and it are past retention, not missing.
 */
export function retentionLine(stream: string, retainedFrom: number): string {
  return JSON.stringify({ stream, retainedFrom });
}

/** The export's first line. */
export function trailHeaderLine(header: TrailExportHeader): string {
  return JSON.stringify(TrailExportHeader.parse(header));
}

/**
 * The line of a rule event: its stream, sequence (the revision) and time, then the event's text
 * spliced in unchanged (its hash is what the next event names, its signature over those bytes).
 */
export function ruleEventLine(stream: string, seq: number, time: Date, text: string): string {
  return `{"stream":${JSON.stringify(stream)},"seq":${seq},"time":"${time.toISOString()}","event":${text}}`;
}

/**
 * The line of a decision record: its stream, the sequence of its message, its place there and the
 * message's time, then the record's sealed text (with its proof and the batch signature) unchanged.
 */
export function decisionLine(stream: string, seq: number, index: number, time: Date, text: string): string {
  return `{"stream":${JSON.stringify(stream)},"seq":${seq},"index":${index},"time":"${time.toISOString()}","record":${text}}`;
}

/**
 * Reads one line of an export. The record's text is cut from the line as written (everything
 * after the envelope's `"event":` or `"record":` up to the closing brace), never re-serialized, so
 * a record verifies offline exactly as it did in the stream. Never throws.
 */
export function parseTrailLine(line: string): TrailExportLine {
  const value = parseJsonOrNull(line);
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    return { kind: "invalid", reason: "not a JSON object" };
  }
  if ("format" in value) {
    const header = TrailExportHeader.safeParse(value);
    return header.success
      ? { kind: "header", header: header.data }
      : { kind: "invalid", reason: `not an export header (${TRAIL_EXPORT_FORMAT})` };
  }
  if ("retainedFrom" in value) {
    const retention = RetentionLine.safeParse(value);
    return retention.success
      ? { kind: "retention", ...retention.data }
      : { kind: "invalid", reason: "not a retention line" };
  }
  if ("record" in value) {
    const envelope = DecisionLineEnvelope.safeParse(value);
    const text = splicedText(line, "record");
    if (!envelope.success || text === null) return { kind: "invalid", reason: "not a decision line" };
    const { stream, seq, index, time } = envelope.data;
    return { kind: "decision", stream, seq, index, time: new Date(time), text };
  }
  const envelope = RuleLineEnvelope.safeParse(value);
  const text = splicedText(line, "event");
  if (!envelope.success || text === null) return { kind: "invalid", reason: "not a rule event line" };
  const { stream, seq, time } = envelope.data;
  return { kind: "rule", stream, seq, time: new Date(time), text };
}

/**
 * The text after the first `"<member>":` to the line's last `}`, as the writers above put it
 * last, after members that cannot hold that text (a stream name, numbers, a time).
 */
function splicedText(line: string, member: string): string | null {
  const key = `"${member}":`;
  const at = line.indexOf(key);
  const end = line.trimEnd();
  if (at === -1 || !end.endsWith("}")) return null;
  return end.slice(at + key.length, -1);
}
