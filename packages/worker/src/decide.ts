import type { UnsignedDecisionV1 } from "@arbiter/protocol";
import { isOneLine } from "@arbiter/store";
import type { TrustResult } from "./request-signatures.js";

export type { DecidingWorker, DecisionContext } from "@arbiter/rules";
export { decideRequest, decisionRecord, rejectionRecord, trustRefusal } from "@arbiter/rules";

/** The trust result of a request when signatures are not checked (`requestSignatures: off`). */
export const UNVERIFIED: TrustResult = Object.freeze({
  verified: false,
  reasons: [],
  signed: false,
  issuer: null,
  tokenId: null,
  issuedAt: null,
  problems: [],
});

/**
 * The record's JSON text in UTF-8, on one line. With `requestBytes` (the payload as received, which
 * parsed to `record.request`), the request is written as those very bytes instead of being
 * serialized again: the record keeps the request exactly as the host sent it, and the worker
 * saves the larger half of the serialization. A payload with a line break is serialized instead,
 * since a record must stay on one line in its batch (`isOneLine` in @arbiter/store).
 */
export function encodeDecisionRecord(record: UnsignedDecisionV1, requestBytes: Uint8Array | null): Buffer {
  const request = requestBytes === null ? null : trimmedJson(requestBytes);
  if (request === null || !isOneLine(request)) {
    return Buffer.from(JSON.stringify(record));
  }
  const value = record.request;
  record.request = null;
  const text = JSON.stringify(record);
  record.request = value;
  // decisionRecord puts `request` last, so the text ends with it; anything else is serialized whole.
  if (!text.endsWith(REQUEST_LAST)) return Buffer.from(JSON.stringify(record));
  // "null}" is ASCII: the head's UTF-8 bytes are all but the last five.
  const headBytes = Buffer.byteLength(text) - NULL_CLOSE;
  const out = Buffer.allocUnsafe(headBytes + request.length + 1);
  out.write(text, 0, headBytes);
  out.set(request, headBytes);
  out[out.length - 1] = CLOSE_BRACE;
  return out;
}

/** The payload less a UTF-8 byte order mark (the decoder dropped it; JSON has no place for it) and surrounding whitespace. */
function trimmedJson(bytes: Uint8Array): Buffer {
  // A Buffer view, for the native (memchr) indexOf.
  const view = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let start = view[0] === 0xef && view[1] === 0xbb && view[2] === 0xbf ? 3 : 0;
  let end = view.length;
  while (start < end && isJsonSpace(view[start]!)) start++;
  while (end > start && isJsonSpace(view[end - 1]!)) end--;
  return view.subarray(start, end);
}

const REQUEST_LAST = ',"request":null}';
const NULL_CLOSE = "null}".length;
const LF = 0x0a;
const CR = 0x0d;
const CLOSE_BRACE = 0x7d;

function isJsonSpace(byte: number): boolean {
  return byte === 0x20 || byte === 0x09 || byte === LF || byte === CR;
}
