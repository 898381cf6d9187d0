import type { NormalizedRequest, UnsignedDecisionV1 } from "@arbiter/protocol";
import type { DecidingWorker, Evaluation } from "@arbiter/rules";
import { isOneLine } from "@arbiter/store";
import type { Reevaluation } from "./active-projection.js";
import { decisionRecord, encodeDecisionRecord } from "./decide.js";
import type { TrustResult } from "./request-signatures.js";

/** What all the re-evaluation records of one revision share. */
export interface ReevaluationScope {
  readonly revision: number;
  readonly deployment: string | null;
  readonly worker: DecidingWorker;
}

/**
 * Encodes re-evaluation decision records, in pieces: the bytes `encodeDecisionRecord` gives for the record
 * `decisionRecord` builds (with `cause: "reevaluation"`), byte for byte. The bytes are put together
 * from parts encoded once: the scope's for every record of the revision, each request's fields,
 * bytes and trust for all the revisions that re-evaluate it, and the outcome's for consecutive
 * records that share it, so that a record costs little more than its id and one copy. A request
 * whose bytes the generic encoder would not write as they are gets the generic record.
 * `requestBytes` gives the request's JSON, as the generic encoder takes it. A record over
 * `limitBytes` (what one decision message can hold) is written without its request, the size it
 * had in `truncated.request`, as the decision path writes one: a record that cannot be stored
 * would hold up every override of its scan.
 */
export function reevaluationRecordEncoder(
  scope: ReevaluationScope,
  requestBytes: (input: unknown) => Uint8Array | null,
  limitBytes = Number.POSITIVE_INFINITY,
): (c: Reevaluation, decisionId: string) => RecordPieces {
  const encode = assembler(scope, requestBytes);
  return (c, decisionId) => {
    const body = encode(c, decisionId);
    if (body.length <= limitBytes) return body;
    const record = genericRecord(scope, c, decisionId);
    return whole(
      encodeDecisionRecord({ ...record, request: null, truncated: { request: body.length } }, null),
    );
  };
}

/** A record's bytes in pieces, to be copied once into its batch message (their concatenation is the record). */
export interface RecordPieces {
  readonly pieces: readonly Uint8Array[];
  readonly length: number;
}

function whole(bytes: Buffer): RecordPieces {
  return { pieces: [bytes], length: bytes.length };
}

function genericRecord(scope: ReevaluationScope, c: Reevaluation, decisionId: string): UnsignedDecisionV1 {
  const record = decisionRecord(
    c.request,
    c.evaluation,
    { ...scope, decisionId, now: c.now, latencyMicros: 0 },
    c.trust,
  );
  record.cause = "reevaluation";
  return record;
}

function assembler(
  scope: ReevaluationScope,
  requestBytes: (input: unknown) => Uint8Array | null,
): (c: Reevaluation, decisionId: string) => RecordPieces {
  const middle = `"revision":${JSON.stringify(scope.revision)},"deployment":${JSON.stringify(scope.deployment)},`;
  const worker = `"worker":${JSON.stringify(scope.worker)},"trust":`;
  // The entries a revision flips mostly share one outcome, and a scan one clock value: the bytes
  // from the outcome to the trust are made once while both last.
  let lastEvaluation: Evaluation | null = null;
  let lastNow: Date | null = null;
  let shared = Buffer.alloc(0);
  return (c, decisionId) => {
    const parts = requestParts(c.request, requestBytes);
    if (parts === null) {
      return whole(encodeDecisionRecord(genericRecord(scope, c, decisionId), requestBytes(c.request.input)));
    }
    if (lastEvaluation === null || lastNow !== c.now || !sameEvaluation(lastEvaluation, c.evaluation)) {
      lastEvaluation = c.evaluation;
      lastNow = c.now;
      shared = Buffer.from(
        `${evaluationText(c.evaluation)}${middle}"evaluatedAt":${JSON.stringify(c.now.toISOString())},${worker}`,
      );
    }
    // Pieces already in UTF-8, copied once into the batch message: no text of the whole is made.
    const id = Buffer.from(`{"decisionId":${JSON.stringify(decisionId)},`);
    const trust = trustTail(c.trust);
    return {
      pieces: [id, parts.head, shared, trust, parts.request, CLOSING],
      length: id.length + parts.head.length + shared.length + trust.length + parts.request.length + 1,
    };
  };
}

const TAIL = Buffer.from(`,"cause":"reevaluation","latencyMicros":0,"request":`);
const CLOSING = Buffer.from("}");

/** A request's fields as its records write them, through `"rejection":null,`, and its bytes as written. */
interface RequestParts {
  readonly head: Buffer;
  readonly request: Uint8Array;
}

/** Parts of requests already serialized, by the request object (null: the generic encoder writes its records). */
const partsOf = new WeakMap<NormalizedRequest, RequestParts | null>();

/**
 * Serializes ahead the parts of the re-evaluation records of `request` decided with `trust` (the
 * bytes of a request whose records the generic encoder writes are not kept).
 */
export function prepareRecordParts(
  request: NormalizedRequest,
  trust: TrustResult,
  requestBytes: (input: unknown) => Uint8Array | null,
): void {
  requestParts(request, requestBytes);
  trustTail(trust);
}

function requestParts(
  request: NormalizedRequest,
  requestBytes: (input: unknown) => Uint8Array | null,
): RequestParts | null {
  let parts = partsOf.get(request);
  if (parts === undefined) {
    const bytes = requestBytes(request.input);
    // The generic encoder writes such requests serialized; only those it writes as their bytes are written here.
    parts =
      bytes === null || !isCanonical(bytes)
        ? null
        : {
            head: Buffer.from(
              `"requestId":${JSON.stringify(request.requestId)},"lattice":${JSON.stringify(request.host.lattice)},` +
                `"host":${JSON.stringify(request.host.publicKey)},"kind":${JSON.stringify(request.kind)},` +
                `"cacheKey":${JSON.stringify(request.cacheKey)},"lineage":${JSON.stringify(request.lineage)},"rejection":null,`,
            ),
            request: bytes,
          };
    partsOf.set(request, parts);
  }
  return parts;
}

/** Bytes the generic encoder would write as they are: one line, no byte order mark, no surrounding space. */
function isCanonical(bytes: Uint8Array): boolean {
  if (bytes.length === 0 || !isOneLine(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)))
    return false;
  const first = bytes[0]!;
  const last = bytes[bytes.length - 1]!;
  return !isSpaceOrMark(first) && !isSpaceOrMark(last);
}

function isSpaceOrMark(byte: number): boolean {
  return byte === 0x20 || byte === 0x09 || byte === 0x0a || byte === 0x0d || byte === 0xef;
}

function sameEvaluation(a: Evaluation, b: Evaluation): boolean {
  return (
    a.permitted === b.permitted &&
    a.message === b.message &&
    a.decidingRule === b.decidingRule &&
    sameTexts(a.matchedRules, b.matchedRules) &&
    sameTexts(a.dryRunRules, b.dryRunRules) &&
    a.errors.length === b.errors.length &&
    a.errors.every((e, i) => e.ruleId === b.errors[i]!.ruleId && e.message === b.errors[i]!.message)
  );
}

function sameTexts(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((text, i) => text === b[i]);
}

function evaluationText(evaluation: Evaluation): string {
  return (
    `"permitted":${JSON.stringify(evaluation.permitted)},"message":${JSON.stringify(evaluation.message)},` +
    `"decidingRule":${JSON.stringify(evaluation.decidingRule)},"matchedRules":${JSON.stringify(evaluation.matchedRules)},` +
    `"dryRunRules":${JSON.stringify(evaluation.dryRunRules)},"ruleErrors":${JSON.stringify(evaluation.errors)},`
  );
}

/**
 * A record's `trust`, as `decisionRecord` copies it from a trust result, and what follows it up to
 * the request, encoded once per trust result (one per stored trust, see `reevaluate`).
 */
const trustTails = new WeakMap<TrustResult, Buffer>();

function trustTail(trust: TrustResult): Buffer {
  let bytes = trustTails.get(trust);
  if (bytes === undefined) {
    const text = JSON.stringify({
      verified: trust.verified,
      reasons: [...trust.reasons],
      signed: trust.signed,
      issuer: trust.issuer,
      tokenId: trust.tokenId,
      issuedAt: trust.issuedAt,
    });
    bytes = Buffer.concat([Buffer.from(text), TAIL]);
    trustTails.set(trust, bytes);
  }
  return bytes;
}
