import type { z } from "zod";
import { countWrittenKeys, findDuplicateKey } from "./duplicate-keys.js";
import {
  type ClaimsV1,
  LegacyActionV082,
  PolicyRequestV1,
  PolicyRequestV082,
  type RequestKindV1,
} from "./wasmcloud.js";

/** Which host generation sent a request: 1.x (`kind`/`version`) or 0.82/Elixir (`action`). */
export type Lineage = "v1" | "v0.82";

/** The part of a request the rules look at, the same for both host lineages. */
export interface NormalizedRequest {
  readonly lineage: Lineage;
  readonly requestId: string;
  readonly kind: RequestKindV1;
  readonly host: { publicKey: string; lattice: string; labels: Record<string, string> };
  /** The component or provider the request is about; null for `kind: "unknown"`. */
  readonly subject: {
    id: string;
    imageRef: string;
    annotations: Record<string, string>;
    maxInstances: number;
  } | null;
  readonly claims: ClaimsV1 | null;
  readonly invocation: { interface: string; function: string } | null;
  /** The host's cache key for this request: `{kind}:{key}` (see {@link cacheKeyV1}). */
  readonly cacheKey: string;
  /** The request exactly as received (parsed JSON, unknown fields kept). */
  readonly input: unknown;
}

/** Outcome of decoding bytes from the policy topic: a request, or why it was rejected. */
export type DecodedRequest =
  | { readonly ok: true; readonly request: NormalizedRequest }
  | {
      readonly ok: false;
      /** The request id, when one could be found, so the rejection can still be answered. */
      readonly requestId: string | null;
      /** What was wrong, for the host's `message` and the log. */
      readonly reason: string;
      /**
       * The parsed JSON when it parsed, else null. When it was nested too deep, a copy cut at the
       * depth limit (deeper objects and arrays replaced by null): the whole value could not be
       * serialized again (JSON.stringify recurses, and overflows the stack a few thousand levels
       * down), so it could not be recorded.
       */
      readonly input: unknown;
      readonly kind: string | null;
    };

/** Limits applied at the edge before any schema is consulted. */
export interface DecodeLimits {
  /** Largest accepted payload in bytes (default 1 MiB). */
  readonly maxBytes?: number;
  /** Deepest accepted JSON nesting (default 32; real requests nest 5 deep). */
  readonly maxDepth?: number;
  /**
   * Most JSON values (objects, arrays, strings, numbers, booleans, nulls) accepted in one payload:
   * default 10,000 from {@link decodePolicyRequest}, none from {@link decodePolicyValue} (a record
   * made before the limit decodes as it was decided). Real requests hold a few dozen.
   */
  readonly maxValues?: number;
}

const DEFAULT_MAX_BYTES = 1024 * 1024;
const DEFAULT_MAX_DEPTH = 32;
/**
 * Values parsed take up to twenty times their bytes in memory (870 KB of `{}` is 19 MB), and every
 * worker keeps each indexed request parsed: the count bounds that at a few bytes per byte sent.
 */
const DEFAULT_MAX_VALUES = 10_000;
const MAX_REQUEST_ID = 256;
/** Longest key or value quoted in a reason; longer ones are cut and their length given. */
const MAX_QUOTED = 64;
/**
 * Longest reason. The reason is the host's `message` and is recorded twice in the decision, next
 * to the request: echoing a payload-sized key or kind would make that record larger than the
 * request (three times), and past NATS's max_payload the decision could not be recorded at all.
 */
const MAX_REASON = 1024;
const utf8 = new TextDecoder("utf-8", { fatal: true });
const lossyUtf8 = new TextDecoder("utf-8");
const KINDS_V1: readonly string[] = ["startComponent", "startProvider", "performInvocation", "unknown"];

/**
 * Decodes one message from the policy topic. Never throws: every failure (size, UTF-8, JSON,
 * nesting, too many values, `__proto__` keys, duplicate keys, numbers beyond a double's range, schema) comes back as `ok: false` with a reason that names it and,
 * where the payload carries one, the request id to answer. A text that opens more objects and arrays
 * than `maxValues` is refused before it is parsed.
 */
export function decodePolicyRequest(bytes: Uint8Array, limits: DecodeLimits = {}): DecodedRequest {
  const maxBytes = limits.maxBytes ?? DEFAULT_MAX_BYTES;
  if (bytes.byteLength > maxBytes) {
    return reject(
      scanRequestId(lossyUtf8.decode(bytes.subarray(0, 4096))),
      `payload of ${bytes.byteLength} bytes exceeds the limit of ${maxBytes} bytes`,
    );
  }
  if (bytes.byteLength === 0) return reject(null, "empty payload: expected a JSON policy request");
  let text: string;
  try {
    text = utf8.decode(bytes);
  } catch {
    return reject(scanRequestId(lossyUtf8.decode(bytes)), "payload is not valid UTF-8");
  }
  const maxValues = limits.maxValues ?? DEFAULT_MAX_VALUES;
  // A text shorter than the limit cannot hold more values; a real request never pays for the count.
  if (text.length > maxValues && holdsMoreContainers(text, maxValues)) {
    return reject(scanRequestId(text), tooManyValues(maxValues), null, scanKind(text));
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    const detail = err instanceof Error ? err.message : String(err);
    return reject(scanRequestId(text), `payload is not JSON: ${detail}`);
  }
  return decodeParsed(value, limits, text, maxValues);
}

/**
 * Whether `text` opens more than `max` objects and arrays, brackets inside strings not counted. A
 * pass of `charCodeAt` and `indexOf`, run before JSON.parse: a parse costs about ten times more per
 * byte on brackets than on flat text (a megabyte of them 0.15 s), and a worker busy parsing does
 * not read its connection, which nats-server cuts off as a slow consumer once 64 MB wait for it.
 * Pure.
 */
function holdsMoreContainers(text: string, max: number): boolean {
  let containers = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x5b || c === 0x7b) {
      if (++containers > max) return true;
    } else if (c === 0x22) {
      let end = text.indexOf('"', i + 1);
      while (end !== -1 && isEscapedQuote(text, end)) end = text.indexOf('"', end + 1);
      if (end === -1) return false;
      i = end;
    }
  }
  return false;
}

/** Whether the quote at `at` is escaped (an odd run of backslashes before it). */
function isEscapedQuote(text: string, at: number): boolean {
  let backslashes = 0;
  while (text.charCodeAt(at - 1 - backslashes) === 0x5c) backslashes++;
  return backslashes % 2 === 1;
}

/** The reason of a payload refused for its count of values. */
function tooManyValues(maxValues: number): string {
  return `payload: more than ${maxValues} JSON values (a policy request holds a few dozen)`;
}

/**
 * Like {@link decodePolicyRequest} for a payload already parsed from JSON. Never throws. Duplicate
 * keys cannot be seen once parsed: only {@link decodePolicyRequest} refuses them.
 */
export function decodePolicyValue(value: unknown, limits: DecodeLimits = {}): DecodedRequest {
  return decodeParsed(value, limits, null, limits.maxValues ?? Number.POSITIVE_INFINITY);
}

function decodeParsed(
  value: unknown,
  limits: DecodeLimits,
  text: string | null,
  maxValues: number,
): DecodedRequest {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    return reject(null, `expected a JSON object, got ${describe(value)}`, value);
  }
  const record = value as Record<string, unknown>;
  const rawId = record["requestId"];
  const requestId =
    typeof rawId === "string" && rawId.length > 0 && rawId.length <= MAX_REQUEST_ID ? rawId : null;
  const rawKind = typeof record["kind"] === "string" ? record["kind"] : null;

  const maxDepth = limits.maxDepth ?? DEFAULT_MAX_DEPTH;
  const shape = checkShape(value, maxDepth, maxValues);
  if (!shape.ok) {
    // Too many values are kept by no record (what is refused is the memory they take).
    const input = shape.tooDeep ? cutAt(value, maxDepth) : shape.tooMany ? null : value;
    return reject(requestId, shape.reason, input, rawKind);
  }
  // JSON.parse keeps the last copy of a repeated key, but a reader of the recorded bytes that keeps
  // the first would see another request: a request that can be read two ways is refused. The text
  // writes more keys than the parsed value holds exactly when some object repeats a key; only then
  // is the text scanned again to name it.
  if (text !== null && countWrittenKeys(text) !== shape.keys) {
    const duplicate = findDuplicateKey(text, maxDepth);
    const where =
      duplicate === null
        ? "a key is repeated"
        : `duplicate key ${quote(duplicate.key)} at ${duplicate.path.length === 0 ? "the top level" : formatPath(duplicate.path)}`;
    return reject(requestId, where, value, rawKind);
  }
  if (requestId === null) {
    return reject(
      null,
      rawId === undefined
        ? "requestId: required"
        : `requestId: expected a string of 1 to ${MAX_REQUEST_ID} characters`,
      value,
      rawKind,
    );
  }

  if ("action" in record && !("kind" in record)) return decodeV082(record, requestId);

  if (rawKind === null) {
    return reject(
      requestId,
      "kind" in record ? `kind: expected a string, got ${describe(record["kind"])}` : "kind: required",
      value,
    );
  }
  if (!KINDS_V1.includes(rawKind)) {
    return reject(
      requestId,
      `unknown kind ${quote(rawKind)}: expected startComponent, startProvider, performInvocation or unknown`,
      value,
      rawKind,
    );
  }
  const parsed = PolicyRequestV1.safeParse(value);
  if (!parsed.success) return reject(requestId, formatIssues(parsed.error), value, rawKind);
  return { ok: true, request: normalizeV1(parsed.data, value) };
}

function decodeV082(record: Record<string, unknown>, requestId: string): DecodedRequest {
  const action = record["action"];
  if (!LegacyActionV082.safeParse(action).success) {
    return reject(
      requestId,
      `unknown action ${quote(action)}: expected start_actor, start_provider or perform_invocation`,
      record,
      typeof action === "string" ? action : null,
    );
  }
  const parsed = PolicyRequestV082.safeParse(record);
  if (!parsed.success) return reject(requestId, formatIssues(parsed.error), record, String(action));
  return { ok: true, request: normalizeV082(parsed.data, record) };
}

/** Maps a parsed 1.x request to the common view; claims of an invocation come from its target. */
export function normalizeV1(request: PolicyRequestV1, input: unknown = request): NormalizedRequest {
  // Plain literals rather than a spread of shared fields: on the decision path, V8 makes
  // `{ ...base, more }` some fifty times slower than writing the object out.
  const { requestId, host } = request;
  const cacheKey = cacheKeyV1(request);
  switch (request.kind) {
    case "startComponent": {
      const body = request.request;
      return {
        lineage: "v1",
        requestId,
        host,
        input,
        kind: request.kind,
        subject: {
          id: body.componentId,
          imageRef: body.imageRef,
          annotations: body.annotations,
          maxInstances: body.maxInstances,
        },
        claims: body.claims,
        invocation: null,
        cacheKey,
      };
    }
    case "startProvider": {
      const body = request.request;
      return {
        lineage: "v1",
        requestId,
        host,
        input,
        kind: request.kind,
        subject: {
          id: body.providerId,
          imageRef: body.imageRef,
          annotations: body.annotations,
          maxInstances: 0,
        },
        claims: body.claims,
        invocation: null,
        cacheKey,
      };
    }
    case "performInvocation": {
      const { target } = request.request;
      return {
        lineage: "v1",
        requestId,
        host,
        input,
        kind: request.kind,
        subject: {
          id: target.componentId,
          imageRef: target.imageRef,
          annotations: target.annotations,
          maxInstances: target.maxInstances,
        },
        claims: target.claims,
        invocation: { interface: request.request.interface, function: request.request.function },
        cacheKey,
      };
    }
    case "unknown":
      return {
        lineage: "v1",
        requestId,
        host,
        input,
        kind: "unknown",
        subject: null,
        claims: null,
        invocation: null,
        cacheKey,
      };
  }
}

const LEGACY_KIND: Record<LegacyActionV082, RequestKindV1> = {
  start_actor: "startComponent",
  start_provider: "startProvider",
  perform_invocation: "performInvocation",
};

/**
 * Maps a 0.82 request to the common view. The subject is the target entity (no image reference
 * exists in that format); its claims are built from the fields the host sends, and for an
 * invocation the interface is the target's contract id.
 */
export function normalizeV082(request: PolicyRequestV082, input: unknown = request): NormalizedRequest {
  const { source, target, host } = request;
  const kind = LEGACY_KIND[request.action];
  const issuer = request.action === "perform_invocation" ? source.issuer : target.issuer;
  return {
    lineage: "v0.82",
    requestId: request.requestId,
    kind,
    host: { publicKey: host.publicKey, lattice: host.latticeId, labels: host.labels },
    subject: { id: target.publicKey, imageRef: "", annotations: {}, maxInstances: 0 },
    claims: issuer
      ? {
          publicKey: request.action === "perform_invocation" ? (source.publicKey ?? "") : target.publicKey,
          issuer,
          issuedAt: source.issuedOn ?? "",
          expiresAt: source.expiresAt ?? null,
          expired: source.expired ?? false,
        }
      : null,
    invocation:
      request.action === "perform_invocation"
        ? { interface: target.contractId ?? "", function: target.linkName ?? "" }
        : null,
    cacheKey: cacheKeyV082(request),
    input,
  };
}

/**
 * The 1.x host's cache key, as `{kind}:{key}`: `{componentId}_{imageRef}`,
 * `{providerId}_{imageRef}` or `{componentId}_{imageRef}_{interface}_{function}`.
 * Claims, annotations and host are not part of it.
 */
export function cacheKeyV1(request: PolicyRequestV1): string {
  switch (request.kind) {
    case "startComponent":
      return `startComponent:${request.request.componentId}_${request.request.imageRef}`;
    case "startProvider":
      return `startProvider:${request.request.providerId}_${request.request.imageRef}`;
    case "performInvocation": {
      const { target } = request.request;
      return `performInvocation:${target.componentId}_${target.imageRef}_${request.request.interface}_${request.request.function}`;
    }
    case "unknown":
      return "unknown:";
  }
}

/** The 0.82 host's cache key: the whole (source, target, action), as `{action}:{json}`. */
export function cacheKeyV082(request: PolicyRequestV082): string {
  const { source: s, target: t } = request;
  const parts = [
    s.publicKey,
    s.contractId,
    s.linkName,
    s.capabilities,
    s.issuer,
    s.issuedOn,
    s.expiresAt,
    s.expired,
    t.publicKey,
    t.issuer,
    t.contractId,
    t.linkName,
  ];
  return `${request.action}:${JSON.stringify(parts.map((p) => p ?? null))}`;
}

/**
 * Rejects what JSON.parse accepts but a policy request must never contain: nesting deeper than
 * `maxDepth` (a stack-exhaustion vector for later serializers), more than `maxValues` values (a
 * memory-exhaustion vector for everything that keeps the request parsed) and `__proto__` keys
 * (which a later object copy would turn into a prototype change). Counts the keys it walks, for
 * the duplicate check.
 */
function checkShape(
  root: unknown,
  maxDepth: number,
  maxValues: number,
): { ok: true; keys: number } | { ok: false; reason: string; tooDeep: boolean; tooMany: boolean } {
  // Walks without building paths (the common case finds nothing); a path is spelled out only for
  // the problem found. Recursion stops at maxDepth, so the stack stays shallow.
  const tally = { keys: 0, values: 0, maxValues };
  const found = findShapeProblem(root, 1, maxDepth, tally);
  if (found === null) return { ok: true, keys: tally.keys };
  const path = formatPath(found.path.reverse());
  switch (found.problem) {
    case "deep":
      return {
        ok: false,
        reason: `${path || "payload"}: nested deeper than ${maxDepth} levels`,
        tooDeep: true,
        tooMany: false,
      };
    case "values":
      return {
        ok: false,
        reason: tooManyValues(maxValues),
        tooDeep: false,
        tooMany: true,
      };
    case "proto":
      return {
        ok: false,
        reason: `${path}: the key "__proto__" is not allowed`,
        tooDeep: false,
        tooMany: false,
      };
    case "infinite":
      // JSON.parse reads it as Infinity, which JSON writes as null: no record could show what was evaluated.
      return {
        ok: false,
        reason: `${path}: a number beyond the range of a double`,
        tooDeep: false,
        tooMany: false,
      };
  }
}

/** `request.claims`, `items[0].id`: a path from the root, keys cut when long. */
function formatPath(path: readonly (string | number)[]): string {
  return path
    .map((step) => (typeof step === "number" ? `[${step}]` : `.${clip(step)}`))
    .join("")
    .replace(/^\./, "");
}

/** The first problem under `value` (at `depth`), with its path from the deepest step up. */
function findShapeProblem(
  value: unknown,
  depth: number,
  maxDepth: number,
  tally: { keys: number; values: number; readonly maxValues: number },
): { path: (string | number)[]; problem: "deep" | "values" | "proto" | "infinite" } | null {
  if (++tally.values > tally.maxValues) return { path: [], problem: "values" };
  if (typeof value === "number") return Number.isFinite(value) ? null : { path: [], problem: "infinite" };
  if (typeof value !== "object" || value === null) return null;
  if (depth > maxDepth) return { path: [], problem: "deep" };
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const found = findShapeProblem(value[i], depth + 1, maxDepth, tally);
      if (found !== null) {
        found.path.push(i);
        return found;
      }
    }
    return null;
  }
  for (const key in value) {
    if (key === "__proto__") return { path: [key], problem: "proto" };
    tally.keys++;
    const found = findShapeProblem((value as Record<string, unknown>)[key], depth + 1, maxDepth, tally);
    if (found !== null) {
      found.path.push(key);
      return found;
    }
  }
  return null;
}

/**
 * A copy of `value` in which every object or array nested deeper than `maxDepth` (the root is at
 * depth 1, as in {@link checkShape}) is replaced by null. Recurses at most `maxDepth` levels. Keys
 * are copied as own data properties, so a `__proto__` key stays a key.
 */
function cutAt(value: unknown, maxDepth: number, depth = 1): unknown {
  if (typeof value !== "object" || value === null) return value;
  if (depth > maxDepth) return null;
  if (Array.isArray(value)) return value.map((item) => cutAt(item, maxDepth, depth + 1));
  const copy: Record<string, unknown> = {};
  for (const [key, item] of Object.entries(value)) {
    Object.defineProperty(copy, key, {
      value: cutAt(item, maxDepth, depth + 1),
      enumerable: true,
      writable: true,
      configurable: true,
    });
  }
  return copy;
}

/** Finds `"requestId": "…"` in text that did not parse, so even garbage with an id is answered. */
function scanRequestId(text: string): string | null {
  const match = /"requestId"\s*:\s*"((?:[^"\\]|\\.){1,256})"/.exec(text);
  if (!match?.[1]) return null;
  try {
    const id: unknown = JSON.parse(`"${match[1]}"`);
    return typeof id === "string" && id.length > 0 ? id : null;
  } catch {
    return null;
  }
}

/** The first `"kind": "…"` of an unparsed text (at most 64 characters), or null. */
function scanKind(text: string): string | null {
  return /"kind"\s*:\s*"([^"\\]{1,64})"/.exec(text)?.[1] ?? null;
}

// The reasons decodePolicyRequest gives about the bytes themselves rather than the value they parse to.
const BYTE_LEVEL_REASONS: readonly RegExp[] = [
  /^payload of \d+ bytes exceeds the limit/,
  /^empty payload/,
  /^payload is not valid UTF-8/,
  /^payload is not JSON/,
  /^duplicate key /,
  /^a key is repeated$/,
  /nested deeper than \d+ levels$/,
  /^payload: more than \d+ JSON values/,
];

/**
 * Whether `reason`, from {@link decodePolicyRequest}, is about the payload's bytes rather than the
 * value they parse to (its size, UTF-8, JSON syntax, a repeated key, its nesting, its count of
 * values). A decision record keeps the parsed value (or null, or a copy cut at the depth limit), so such a rejection cannot be
 * reproduced from the record: only one about the value can, with {@link decodePolicyValue}.
 */
export function isByteLevelRejection(reason: string): boolean {
  return BYTE_LEVEL_REASONS.some((pattern) => pattern.test(reason));
}

/** Formats zod issues as `path: message` lines, at most three, for a host-facing message. */
export function formatIssues(error: z.ZodError): string {
  const lines = error.issues.slice(0, 3).map((issue) => {
    const path = issue.path.map((p) => (typeof p === "number" ? `[${p}]` : clip(String(p)))).join(".");
    return `${path.replace(/\.\[/g, "[") || "payload"}: ${issue.message}`;
  });
  const more = error.issues.length > 3 ? `; and ${error.issues.length - 3} more` : "";
  return `invalid request: ${lines.join("; ")}${more}`;
}

function reject(
  requestId: string | null,
  reason: string,
  input: unknown = null,
  kind: string | null = null,
): DecodedRequest {
  return { ok: false, requestId, reason: shorten(reason, MAX_REASON), input, kind };
}

/** A value from the payload as JSON for a reason, cut to its start (and length) when long. */
function quote(value: unknown): string {
  return typeof value === "string"
    ? JSON.stringify(clip(value))
    : clip(JSON.stringify(value) ?? String(value));
}

/** `text` when it has at most `max` characters, else its start and its length. */
function clip(text: string, max = MAX_QUOTED): string {
  return text.length <= max ? text : `${head(text, max)}…(${text.length} characters)`;
}

/** `text` when it has at most `max` characters, else its start and its end around an ellipsis. */
function shorten(text: string, max: number): string {
  if (text.length <= max) return text;
  const tail = Math.floor(max / 3);
  return `${head(text, max - tail - 1)}…${text.slice(text.length - tail).replace(/^[\udc00-\udfff]/, "")}`;
}

/** The first `n` UTF-16 units of `text`, without splitting a surrogate pair. */
function head(text: string, n: number): string {
  const code = text.charCodeAt(n - 1);
  return text.slice(0, code >= 0xd800 && code <= 0xdbff ? n - 1 : n);
}

function describe(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  return typeof value === "object" ? "an object" : `a ${typeof value}`;
}
