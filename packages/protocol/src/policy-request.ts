import type { z } from "zod";
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
      /** The parsed JSON when it parsed, else null. */
      readonly input: unknown;
      readonly kind: string | null;
    };

/** Limits applied at the edge before any schema is consulted. */
export interface DecodeLimits {
  /** Largest accepted payload in bytes (default 1 MiB). */
  readonly maxBytes?: number;
  /** Deepest accepted JSON nesting (default 32; real requests nest 5 deep). */
  readonly maxDepth?: number;
}

const DEFAULT_MAX_BYTES = 1024 * 1024;
const DEFAULT_MAX_DEPTH = 32;
const MAX_REQUEST_ID = 256;
const utf8 = new TextDecoder("utf-8", { fatal: true });
const lossyUtf8 = new TextDecoder("utf-8");
const KINDS_V1: readonly string[] = ["startComponent", "startProvider", "performInvocation", "unknown"];

/**
 * Decodes one message from the policy topic. Never throws: every failure (size, UTF-8, JSON,
 * nesting, `__proto__` keys, schema) comes back as `ok: false` with a reason that names it and,
 * where the payload carries one, the request id to answer.
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
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    const detail = err instanceof Error ? err.message : String(err);
    return reject(scanRequestId(text), `payload is not JSON: ${detail}`);
  }
  return decodePolicyValue(value, limits);
}

/** Like {@link decodePolicyRequest} for a payload already parsed from JSON. Never throws. */
export function decodePolicyValue(value: unknown, limits: DecodeLimits = {}): DecodedRequest {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    return reject(null, `expected a JSON object, got ${describe(value)}`, value);
  }
  const record = value as Record<string, unknown>;
  const rawId = record["requestId"];
  const requestId =
    typeof rawId === "string" && rawId.length > 0 && rawId.length <= MAX_REQUEST_ID ? rawId : null;
  const rawKind = typeof record["kind"] === "string" ? record["kind"] : null;

  const shapeProblem = checkShape(value, limits.maxDepth ?? DEFAULT_MAX_DEPTH);
  if (shapeProblem) return reject(requestId, shapeProblem, value, rawKind);
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
      `unknown kind ${JSON.stringify(rawKind)}: expected startComponent, startProvider, performInvocation or unknown`,
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
      `unknown action ${JSON.stringify(action)}: expected start_actor, start_provider or perform_invocation`,
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
  const base = {
    lineage: "v1" as const,
    requestId: request.requestId,
    host: request.host,
    input,
  };
  switch (request.kind) {
    case "startComponent": {
      const body = request.request;
      return {
        ...base,
        kind: request.kind,
        subject: {
          id: body.componentId,
          imageRef: body.imageRef,
          annotations: body.annotations,
          maxInstances: body.maxInstances,
        },
        claims: body.claims,
        invocation: null,
        cacheKey: cacheKeyV1(request),
      };
    }
    case "startProvider": {
      const body = request.request;
      return {
        ...base,
        kind: request.kind,
        subject: {
          id: body.providerId,
          imageRef: body.imageRef,
          annotations: body.annotations,
          maxInstances: 0,
        },
        claims: body.claims,
        invocation: null,
        cacheKey: cacheKeyV1(request),
      };
    }
    case "performInvocation": {
      const { target } = request.request;
      return {
        ...base,
        kind: request.kind,
        subject: {
          id: target.componentId,
          imageRef: target.imageRef,
          annotations: target.annotations,
          maxInstances: target.maxInstances,
        },
        claims: target.claims,
        invocation: { interface: request.request.interface, function: request.request.function },
        cacheKey: cacheKeyV1(request),
      };
    }
    case "unknown":
      return {
        ...base,
        kind: "unknown",
        subject: null,
        claims: null,
        invocation: null,
        cacheKey: cacheKeyV1(request),
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
 * `maxDepth` (a stack-exhaustion vector for later serializers) and `__proto__` keys (which a
 * later object copy would turn into a prototype change).
 */
function checkShape(root: unknown, maxDepth: number): string | null {
  const stack: { value: unknown; depth: number; path: string }[] = [{ value: root, depth: 1, path: "" }];
  while (stack.length > 0) {
    const { value, depth, path } = stack.pop()!;
    if (typeof value !== "object" || value === null) continue;
    if (depth > maxDepth) return `${path || "payload"}: nested deeper than ${maxDepth} levels`;
    if (Array.isArray(value)) {
      value.forEach((item, i) => {
        stack.push({ value: item, depth: depth + 1, path: `${path}[${i}]` });
      });
      continue;
    }
    for (const key of Object.keys(value)) {
      const at = path ? `${path}.${key}` : key;
      if (key === "__proto__") return `${at}: the key "__proto__" is not allowed`;
      stack.push({ value: (value as Record<string, unknown>)[key], depth: depth + 1, path: at });
    }
  }
  return null;
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

/** Formats zod issues as `path: message` lines, at most three, for a host-facing message. */
export function formatIssues(error: z.ZodError): string {
  const lines = error.issues.slice(0, 3).map((issue) => {
    const path = issue.path.map((p) => (typeof p === "number" ? `[${p}]` : String(p))).join(".");
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
  return { ok: false, requestId, reason, input, kind };
}

function describe(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  return typeof value === "object" ? "an object" : `a ${typeof value}`;
}
