import type { ActiveDecisionV1 } from "@arbiter/protocol";
import type { Evaluation } from "@arbiter/rules";

// A scan writes the override and the revocation record of thousands of changed entries: their
// texts are put together from pieces serialized once (an entry's ids for every revision that
// changes it, an outcome for the entries after it that share it), and equal, byte for byte,
// `JSON.stringify` of `overrideFor` and `revocationFor` (change-texts.test.ts holds them to it).

/** An entry's ids as its texts write them, serialized once. */
interface EntryPieces {
  readonly requestId: string;
  readonly lattice: string;
  readonly host: string;
  readonly cacheKey: string;
  /** `"<request id>"`. */
  readonly requestIdJson: string;
  /** `{"requestId":…,"lattice":…,"host":…,"cacheKey":…`. */
  readonly revocationHead: string;
}

/**
 * Pieces by the entry's request object: an entry changed by a scan is written again with the
 * same request, so the next revision finds them (checked against the entry, never trusted).
 */
const piecesOf = new WeakMap<object, EntryPieces>();

function entryPieces(entry: ActiveDecisionV1): EntryPieces {
  const held = typeof entry.request === "object" && entry.request !== null ? entry.request : null;
  const kept = held === null ? undefined : piecesOf.get(held);
  if (
    kept !== undefined &&
    kept.requestId === entry.requestId &&
    kept.lattice === entry.lattice &&
    kept.host === entry.host &&
    kept.cacheKey === entry.cacheKey
  ) {
    return kept;
  }
  const requestIdJson = JSON.stringify(entry.requestId);
  const pieces: EntryPieces = {
    requestId: entry.requestId,
    lattice: entry.lattice,
    host: entry.host,
    cacheKey: entry.cacheKey,
    requestIdJson,
    revocationHead:
      `{"requestId":${requestIdJson},"lattice":${JSON.stringify(entry.lattice)},` +
      `"host":${JSON.stringify(entry.host)},"cacheKey":${JSON.stringify(entry.cacheKey)}`,
  };
  if (held !== null) piecesOf.set(held, pieces);
  return pieces;
}

/** Serializes ahead the pieces of `entry`'s override and revocation texts (for the index mirror's parsing ahead). */
export function prepareChangeTexts(entry: ActiveDecisionV1): void {
  entryPieces(entry);
}

interface OutcomeText {
  readonly permitted: boolean;
  readonly message: string | null;
  readonly text: string;
}

/**
 * Outcomes' `"permitted":…,"message":…`, the two last asked for, the latest first: a revocation
 * record writes the outcome before and the one after, which a scan's run mostly shares.
 */
const outcomes: [OutcomeText | null, OutcomeText | null] = [null, null];

function outcomeText(permitted: boolean, message: string | null): string {
  const [latest, older] = outcomes;
  if (latest?.permitted === permitted && latest.message === message) return latest.text;
  if (older?.permitted === permitted && older.message === message) {
    outcomes[0] = older;
    outcomes[1] = latest;
    return older.text;
  }
  const made = { permitted, message, text: `"permitted":${permitted},"message":${JSON.stringify(message)}` };
  outcomes[0] = made;
  outcomes[1] = latest;
  return made.text;
}

/** The end of a revocation record from its revision on, for the last revision and time asked for (a scan's). */
let lastTail: { revision: number; at: string; text: string } | null = null;

function revocationTail(revision: number, at: string): string {
  if (lastTail?.revision !== revision || lastTail.at !== at) {
    lastTail = { revision, at, text: `,"revision":${revision},"at":${JSON.stringify(at)}}` };
  }
  return lastTail.text;
}

/**
 * The override of a changed entry as published: `JSON.stringify(overrideFor(entry, evaluation))`,
 * in UTF-8.
 */
export function overrideBytes(entry: ActiveDecisionV1, evaluation: Evaluation): Buffer {
  const id = entryPieces(entry).requestIdJson;
  return Buffer.from(
    `{"requestId":${id},"request_id":${id},${outcomeText(evaluation.permitted, evaluation.message)}}`,
  );
}

/**
 * The revocation record of a changed entry as stored: `JSON.stringify(revocationFor(entry,
 * evaluation, revision, at))`.
 */
export function revocationText(
  entry: ActiveDecisionV1,
  evaluation: Evaluation,
  revision: number,
  at: string,
): string {
  const { revocationHead } = entryPieces(entry);
  const from = outcomeText(entry.permitted, entry.message);
  const to = outcomeText(evaluation.permitted, evaluation.message);
  return `${revocationHead},"from":{${from}},"to":{${to}}${revocationTail(revision, at)}`;
}
