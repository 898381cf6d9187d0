import { batchSeals, type Signer, signBatch } from "@arbiter/trust";
import type { DecisionBatch, DecisionFilter } from "./contracts.js";

const NEWLINE = 0x0a;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const BASE64URL = /^[A-Za-z0-9_-]+$/;
const utf8 = new TextDecoder();

/** The message header that carries a stored batch's signature. */
export const BATCH_SIGNATURE_HEADER = "Arbiter-Batch-Signature";

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
  for (const { decisionId, text } of decisions) {
    if (text.includes("\n")) throw new TypeError(`decision ${decisionId}: its text has a line break`);
  }
  const bodies = decisions.map((d) => Buffer.from(d.text));
  return {
    decisionIds: decisions.map((d) => d.decisionId),
    lines: Buffer.from(decisions.map((d) => d.text).join("\n")),
    signature: signBatch(bodies, signer),
  };
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
