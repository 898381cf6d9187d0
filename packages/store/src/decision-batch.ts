import type { DecisionBatch, DecisionFilter } from "./contracts.js";

const NEWLINE = 0x0a;
const utf8 = new TextDecoder();

/**
 * Checks that `batch` is what {@link DecisionBatch} promises: at least one id, and as many lines
 * as ids, none of them empty. Throws TypeError naming the problem.
 */
export function checkDecisionBatch(batch: DecisionBatch): void {
  const count = batch.decisionIds.length;
  if (count === 0) throw new TypeError("a decision batch needs at least one decision");
  const { lines } = batch;
  let lineCount = 0;
  let start = 0;
  for (;;) {
    const end = indexOfNewline(lines, start);
    if (end === start) throw new TypeError(`decision batch: line ${lineCount + 1} is empty`);
    lineCount++;
    if (end === lines.length) break;
    start = end + 1;
  }
  if (lineCount !== count) {
    throw new TypeError(`decision batch: ${count} decision ids but ${lineCount} lines`);
  }
}

/** A batch from decisions' ids and signed texts (none may hold a line break), for tools and tests. */
export function decisionBatchFromTexts(
  decisions: readonly { readonly decisionId: string; readonly text: string }[],
): DecisionBatch {
  for (const { decisionId, text } of decisions) {
    if (text.includes("\n")) throw new TypeError(`decision ${decisionId}: its text has a line break`);
  }
  return {
    decisionIds: decisions.map((d) => d.decisionId),
    lines: Buffer.from(decisions.map((d) => d.text).join("\n")),
  };
}

/** The decisions' texts in a stored batch, in order. */
export function decisionBatchTexts(lines: Uint8Array | string): string[] {
  return (typeof lines === "string" ? lines : utf8.decode(lines)).split("\n");
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
