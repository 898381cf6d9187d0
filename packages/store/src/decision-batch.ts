import { batchSeals, type Signer, signBatch } from "@arbiter/trust";
import type { DecisionBatch, DecisionFilter } from "./contracts.js";

const NEWLINE = 0x0a;
const CARRIAGE_RETURN = 0x0d;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const BASE64URL = /^[A-Za-z0-9_-]+$/;
const utf8 = new TextDecoder();
/** Keeps a leading byte-order mark: a line is returned as the bytes stored, not as a text editor would read it. */
const utf8AsStored = new TextDecoder("utf-8", { ignoreBOM: true });

/** The message header that carries a stored batch's signature. */
export const BATCH_SIGNATURE_HEADER = "Arbiter-Batch-Signature";

/**
 * The message header of a batch made only of re-evaluation decisions, with the value
 * {@link REEVALUATION_BATCH_CAUSE}. Anyone who may publish there may set it on any batch; all it
 * does is keep that batch out of the active index, which a batch that fails verification is too.
 */
export const BATCH_CAUSE_HEADER = "Arbiter-Batch-Cause";

/** The {@link BATCH_CAUSE_HEADER} value of a batch of re-evaluations. */
export const REEVALUATION_BATCH_CAUSE = "reevaluation";

/** Room left in a decision message for its headers (message id and batch signature). */
const HEADER_ROOM_BYTES = 1024;
/** NATS's default max_payload, for the moment before the server's INFO has arrived. */
const DEFAULT_MAX_PAYLOAD = 1024 * 1024;

/** A decision ready to be stored: its id and its record's JSON text in UTF-8, on one line. */
export interface DecisionLine {
  readonly decisionId: string;
  readonly body: Uint8Array;
}

/**
 * The largest record text one decision message can hold on a server whose max_payload is
 * `maxPayload` (the NATS default when unknown): a record larger than this cannot be stored.
 */
export function maxDecisionRecordBytes(maxPayload: number | undefined): number {
  return maxMessageBodyBytes(maxPayload);
}

/**
 * The largest body a message of Arbiter's (its headers being a message id and a few more) can
 * have on a server whose max_payload is `maxPayload`, the NATS default when unknown.
 */
export function maxMessageBodyBytes(maxPayload: number | undefined): number {
  return (maxPayload ?? DEFAULT_MAX_PAYLOAD) - HEADER_ROOM_BYTES;
}

/** True when `bytes` holds no line break (LF or CR), so it can be one line of a batch. */
export function isOneLine(bytes: Uint8Array): boolean {
  return bytes.indexOf(NEWLINE) === -1 && bytes.indexOf(CARRIAGE_RETURN) === -1;
}

/**
 * Splits decisions, in order, into the runs that each fit one message on a server whose
 * max_payload is `maxPayload`. A record too large on its own still gets a run of its own (and
 * will be refused by the server). Returns `[from, to)` index pairs covering every decision.
 */
export function splitDecisionBatches(
  decisions: readonly DecisionLine[],
  maxPayload: number | undefined,
): Array<[number, number]> {
  return batchRuns(
    decisions.map((d) => d.body.length + 1),
    maxDecisionRecordBytes(maxPayload),
  );
}

/**
 * Frames decisions as one batch (one record per line) and signs it once with `signer`. Throws
 * TypeError for an empty list or a body that is not a one-line JSON object.
 */
export function signDecisionBatch(decisions: readonly DecisionLine[], signer: Signer): DecisionBatch {
  const bodies = decisions.map((d) => d.body);
  for (const [i, body] of bodies.entries()) {
    if (!isOneLine(body))
      throw new TypeError(`decision ${decisions[i]!.decisionId}: its text has a line break`);
  }
  return {
    decisionIds: decisions.map((d) => d.decisionId),
    lines: batchLines(bodies),
    signature: signBatch(bodies, signer),
  };
}

/** A decision ready to be stored whose record text is given in pieces, in order (UTF-8, one line). */
export interface PiecedDecision {
  readonly decisionId: string;
  readonly pieces: readonly Uint8Array[];
  /** The pieces' bytes together. */
  readonly length: number;
}

/** A batch message's records framed, not yet signed: its lines and where each record is in them. */
export interface FramedDecisionBatch {
  readonly decisionIds: readonly string[];
  readonly lines: Buffer;
  /** Each record's first byte in `lines`, and the byte after its last. */
  readonly starts: readonly number[];
  readonly ends: readonly number[];
}

/**
 * The messages {@link splitDecisionBatches} cuts `decisions` into, framed as
 * {@link signDecisionBatch} frames them, each record's pieces copied once, straight into its
 * message (a buffer `allocate` makes). Throws TypeError for pieces that are not their length or a
 * record with a line break.
 */
export function frameDecisionBatches(
  decisions: readonly PiecedDecision[],
  maxPayload: number | undefined,
  allocate: (size: number) => Buffer = Buffer.allocUnsafe,
): FramedDecisionBatch[] {
  for (const d of decisions) {
    let length = 0;
    for (const piece of d.pieces) length += piece.length;
    if (length !== d.length) throw new TypeError(`decision ${d.decisionId}: its pieces are not its length`);
  }
  const runs = batchRuns(
    decisions.map((d) => d.length + 1),
    maxDecisionRecordBytes(maxPayload),
  );
  return runs.map(([from, to]) => {
    let size = -1;
    for (let i = from; i < to; i++) size += decisions[i]!.length + 1;
    const lines = allocate(Math.max(size, 0));
    const starts: number[] = [];
    const ends: number[] = [];
    let at = 0;
    for (let i = from; i < to; i++) {
      const start = at;
      for (const piece of decisions[i]!.pieces) {
        lines.set(piece, at);
        at += piece.length;
      }
      if (!isOneLine(lines.subarray(start, at))) {
        throw new TypeError(`decision ${decisions[i]!.decisionId}: its text has a line break`);
      }
      starts.push(start);
      ends.push(at);
      if (at < lines.length) lines[at++] = NEWLINE;
    }
    return { decisionIds: decisions.slice(from, to).map((d) => d.decisionId), lines, starts, ends };
  });
}

/**
 * Splits lines of the given sizes (newline included), in order, into runs whose message stays
 * within `limit` bytes. A line larger than `limit` on its own still gets a run of its own. Returns
 * `[from, to)` index pairs covering every line.
 */
export function batchRuns(sizes: readonly number[], limit: number): Array<[number, number]> {
  const runs: Array<[number, number]> = [];
  let from = 0;
  let bytes = 0;
  for (let i = 0; i < sizes.length; i++) {
    const size = sizes[i]!;
    // The last line of a message has no newline: a run may end one byte past the limit's count.
    if (i > from && bytes + size - 1 > limit) {
      runs.push([from, i]);
      from = i;
      bytes = 0;
    }
    bytes += size;
  }
  if (sizes.length > 0) runs.push([from, sizes.length]);
  return runs;
}

/** The body of a batch message: the bodies, one per line. */
export function batchLines(bodies: readonly Uint8Array[]): Buffer {
  let size = -1;
  for (const body of bodies) size += body.length + 1;
  const lines = Buffer.allocUnsafe(Math.max(size, 0));
  let at = 0;
  for (const body of bodies) {
    lines.set(body, at);
    at += body.length;
    if (at < lines.length) lines[at++] = NEWLINE;
  }
  return lines;
}

/** True when a stored message (its lines and signature header) is `batch` exactly. */
export function isSameBatch(
  batch: DecisionBatch,
  stored: { readonly data: Uint8Array; readonly signature: string | undefined },
): boolean {
  return (
    stored.signature === batch.signature &&
    Buffer.from(stored.data.buffer, stored.data.byteOffset, stored.data.byteLength).equals(batch.lines)
  );
}

/**
 * Checks that `batch` is what {@link DecisionBatch} promises: at least one id, as many lines as
 * ids, each a JSON object's text (`{…}`), and a base64url signature. Throws TypeError naming the
 * problem.
 */
export function checkDecisionBatch(batch: DecisionBatch): void {
  const count = batch.decisionIds.length;
  if (count === 0) throw new TypeError("a decision batch needs at least one decision");
  const { lines } = batch;
  let lineCount = 0;
  let start = 0;
  for (;;) {
    const end = indexOfNewline(lines, start);
    lineCount++;
    if (end === start) throw new TypeError(`decision batch: line ${lineCount} is empty`);
    if (lines[start] !== OPEN_BRACE || lines[end - 1] !== CLOSE_BRACE) {
      throw new TypeError(`decision batch: line ${lineCount} is not a JSON object`);
    }
    if (end === lines.length) break;
    start = end + 1;
  }
  if (lineCount !== count) {
    throw new TypeError(`decision batch: ${count} decision ids but ${lineCount} lines`);
  }
  if (!BASE64URL.test(batch.signature)) {
    throw new TypeError("decision batch: the signature is not base64url text");
  }
}

/**
 * A batch from decisions' ids and JSON object texts (none may hold a line break), signed by
 * `signer`: for tools and tests. Throws TypeError for a text with a line break or not an object.
 */
export function decisionBatchFromTexts(
  decisions: readonly { readonly decisionId: string; readonly text: string }[],
  signer: Signer,
): DecisionBatch {
  return signDecisionBatch(
    decisions.map((d) => ({ decisionId: d.decisionId, body: Buffer.from(d.text) })),
    signer,
  );
}

/**
 * The decisions of a stored batch, in order, each sealed with its inclusion proof and `signature`.
 * When the batch cannot be sealed (no signature, or a line that is not a JSON object: a message
 * that did not come from a worker), its lines are returned as stored, and will not verify.
 */
export function sealedDecisionTexts(lines: Uint8Array, signature: string | undefined): string[] {
  const bodies: Uint8Array[] = [];
  for (let start = 0; start <= lines.length; ) {
    const end = indexOfNewline(lines, start);
    bodies.push(lines.subarray(start, end));
    start = end + 1;
  }
  const texts = bodies.map((body) => utf8.decode(body));
  if (signature === undefined) return texts;
  let seals: string[];
  try {
    seals = batchSeals(bodies, signature);
  } catch {
    return texts;
  }
  return texts.map((text, i) => `${text.slice(0, -1)}${seals[i]}`);
}

/**
 * The decisions of a stored batch, in order, as stored: one text per line, without the inclusion
 * proof and signature {@link sealedDecisionTexts} adds, for readers that do not verify. The
 * message is decoded once (UTF-8 never holds a newline byte inside a character, so splitting
 * the text is splitting the bytes).
 */
export function decisionTexts(lines: Uint8Array): string[] {
  return utf8AsStored.decode(lines).split("\n");
}

/**
 * True when the decision `text` passes the kind and host of `filter`. Only parses the text when
 * the filter names one of them; a text that is not a JSON object never passes such a filter.
 */
export function decisionMatches(text: string, filter: DecisionFilter): boolean {
  if (filter.kind === undefined && filter.host === undefined) return true;
  let record: unknown;
  try {
    record = JSON.parse(text);
  } catch {
    return false;
  }
  if (typeof record !== "object" || record === null) return false;
  const { kind, host } = record as { kind?: unknown; host?: unknown };
  return (
    (filter.kind === undefined || kind === filter.kind) && (filter.host === undefined || host === filter.host)
  );
}

function indexOfNewline(bytes: Uint8Array, from: number): number {
  const at = bytes.indexOf(NEWLINE, from);
  return at === -1 ? bytes.length : at;
}
