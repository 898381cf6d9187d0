import {
  type ClaimsV1,
  formatIssues,
  type HostInfoV1,
  type LegacyHostV082,
  type LegacySourceV082,
  type LegacyTargetV082,
  PerformInvocationBodyV1,
  type PolicyRequestV1,
  PolicyRequestV082,
  PolicyResponseV1,
  StartComponentBodyV1,
  StartProviderBodyV1,
} from "@arbiter/protocol";
import { ulid, ulidToUUID } from "ulid";
import { z } from "zod";
import { HostRequestError } from "./errors.js";

// Byte-level reproduction of what the wasmCloud hosts put on the policy topic
// (host crate `policy/mod.rs` and `policy/nats.rs` for 1.x, `policy.rs` for 0.82): serde
// serializes struct fields in declaration order and `Option::None` as `null`, so every builder
// below creates its object literally in that order instead of trusting the caller's key order.

/** One action a 1.x host asks about: the request `kind` with its body. */
export type HostActionV1 =
  | { readonly kind: "startComponent"; readonly request: StartComponentBodyV1 }
  | { readonly kind: "startProvider"; readonly request: StartProviderBodyV1 }
  | { readonly kind: "performInvocation"; readonly request: PerformInvocationBodyV1 };

/** A 0.82 request as the caller describes it: everything but the id the client generates. */
export type LegacyRequestInput = Omit<PolicyRequestV082, "requestId">;

/** A response as a host decodes it: `message` may be absent (serde reads a missing `Option` as None). */
export interface DecodedResponse {
  readonly requestId: string;
  readonly permitted: boolean;
  readonly message: string | null;
}

/** Outcome of decoding a response or an override: the response, or why a host would reject it. */
export type DecodeResponseResult =
  | { readonly ok: true; readonly response: DecodedResponse }
  | { readonly ok: false; readonly reason: string };

/**
 * A fresh request id as the hosts make it: a ULID printed as a lower-case hyphenated UUID
 * (`Uuid::from_u128(Ulid::new().into()).to_string()`), e.g. `01945242-abec-71ee-f5e6-1f44eb61ad40`.
 */
export function newRequestId(): string {
  return ulidToUUID(ulid()).toLowerCase();
}

/**
 * Builds a 1.x request with the host's field order and `null`s:
 * `{ requestId, kind, version: "v1", request, host }`. Throws {@link HostRequestError} when the
 * body is not one a host could send.
 */
export function buildRequestV1(requestId: string, action: HostActionV1, host: HostInfoV1): PolicyRequestV1 {
  const hostInfo = { publicKey: host.publicKey, lattice: host.lattice, labels: { ...host.labels } };
  switch (action.kind) {
    case "startComponent": {
      const body = parseBody(StartComponentBodyV1, action.request, action.kind);
      return {
        requestId,
        kind: action.kind,
        version: "v1",
        request: componentInformation(body),
        host: hostInfo,
      };
    }
    case "startProvider": {
      const body = parseBody(StartProviderBodyV1, action.request, action.kind);
      const request = {
        providerId: body.providerId,
        imageRef: body.imageRef,
        annotations: sortedByUtf8(body.annotations),
        claims: policyClaims(body.claims),
      };
      return { requestId, kind: action.kind, version: "v1", request, host: hostInfo };
    }
    case "performInvocation": {
      const body = parseBody(PerformInvocationBodyV1, action.request, action.kind);
      // The host builds the target itself, always with `max_instances: 0` (`evaluate_perform_invocation`).
      const request = {
        interface: body.interface,
        function: body.function,
        target: componentInformation({ ...body.target, maxInstances: 0 }),
      };
      return { requestId, kind: action.kind, version: "v1", request, host: hostInfo };
    }
  }
}

/**
 * Builds a 0.82 request in that host's order, `{ requestId, source, target, host, action }`, with
 * what its Rust types force: `null` for every absent `Option`, `capabilities`/`clusterIssuers`
 * always arrays, `expired` always a boolean. Throws {@link HostRequestError} on invalid input.
 */
export function buildRequestV082(requestId: string, input: LegacyRequestInput): PolicyRequestV082 {
  const parsed = PolicyRequestV082.safeParse({ ...input, requestId });
  if (!parsed.success) throw new HostRequestError(`legacy request: ${formatIssues(parsed.error)}`);
  const { source, target, host, action } = parsed.data;
  return {
    requestId,
    source: legacySource(source),
    target: legacyTarget(target),
    host: legacyHost(host),
    action,
  };
}

/** The bytes a host publishes for a request: compact JSON, UTF-8. */
export function encodeRequest(request: PolicyRequestV1 | PolicyRequestV082): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(request));
}

// serde's derived Deserialize treats a missing `Option` field as None and ignores unknown fields;
// `requestId` and `permitted` are required and must have exactly their JSON types.
const HostResponse = PolicyResponseV1.extend({
  message: z
    .string()
    .nullish()
    .transform((message) => message ?? null),
});

/** With the `u` flag a paired surrogate is one code point, so this matches only lone ones. */
const LONE_SURROGATE = /\p{Cs}/u;

/** The fields of the host's `Response`, in declaration order (which a sequence follows). */
const RESPONSE_FIELDS = ["requestId", "permitted", "message"] as const;
const QUOTED_FIELDS = RESPONSE_FIELDS.map((field) => `"${field}"`);

// `ignoreBOM` keeps a byte order mark in the text, where JSON.parse refuses it as serde_json does.
const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/**
 * Decodes a policy response, or an override from the changes topic, the way a host does
 * (`serde_json::from_slice::<Response>`). Never throws: invalid UTF-8, bad JSON or a wrong shape
 * come back as `ok: false` with the reason. Beyond JSON.parse it applies serde_json's rules: a
 * struct may also be written as an array of its three fields in order; a field may not repeat; a
 * string the struct reads (a top-level key, `requestId`, `message`) may not hold a lone surrogate.
 */
export function decodeResponse(bytes: Uint8Array): DecodeResponseResult {
  let text: string;
  let value: unknown;
  try {
    text = utf8.decode(bytes);
    value = JSON.parse(text);
  } catch (err) {
    const detail = err instanceof Error ? err.message : String(err);
    return { ok: false, reason: `response is not UTF-8 JSON: ${detail}` };
  }
  let fields: unknown = value;
  if (Array.isArray(value)) {
    if (value.length !== RESPONSE_FIELDS.length) {
      return {
        ok: false,
        reason: `invalid length ${value.length}, expected struct Response with 3 elements`,
      };
    }
    fields = Object.fromEntries(RESPONSE_FIELDS.map((field, i) => [field, value[i]]));
  } else if (typeof value === "object" && value !== null) {
    const refused = mayRepeatField(text) ? serdeFieldProblem(text, Object.keys(value)) : null;
    if (refused) return { ok: false, reason: refused };
  }
  const parsed = HostResponse.safeParse(fields);
  if (!parsed.success) {
    return { ok: false, reason: formatIssues(parsed.error).replace(/^invalid request/, "invalid response") };
  }
  const { requestId, message } = parsed.data;
  // A lone surrogate can only be written as an escape: the fatal decoder refuses one in UTF-8.
  if (
    text.includes("\\") &&
    (LONE_SURROGATE.test(requestId) || (message !== null && LONE_SURROGATE.test(message)))
  ) {
    return { ok: false, reason: "lone surrogate in hex escape" };
  }
  return { ok: true, response: parsed.data };
}

/**
 * Whether the text may hold one of the fields twice, or a key with a lone surrogate: true when it
 * has an escape (a key may be spelled with one) or names a field more than once anywhere. The
 * exact reading of the keys is left to {@link serdeFieldProblem}, which is slower.
 */
function mayRepeatField(text: string): boolean {
  if (text.includes("\\")) return true;
  for (const field of QUOTED_FIELDS) {
    const first = text.indexOf(field);
    if (first !== -1 && text.indexOf(field, first + field.length) !== -1) return true;
  }
  return false;
}

/** Why serde would refuse the object's keys: a lone surrogate in one, or a field written twice. */
function serdeFieldProblem(text: string, keys: readonly string[]): string | null {
  if (keys.some((key) => LONE_SURROGATE.test(key))) return "lone surrogate in hex escape in a key";
  const seen = new Set<string>();
  for (const key of topLevelKeys(text)) {
    if (!(RESPONSE_FIELDS as readonly string[]).includes(key)) continue;
    if (seen.has(key)) return `duplicate field \`${key}\``;
    seen.add(key);
  }
  return null;
}

/** The keys of the top-level object of a JSON text JSON.parse accepted, unescaped, repeats included. */
function topLevelKeys(text: string): string[] {
  const keys: string[] = [];
  let depth = 0;
  let expectKey = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '"') {
      const end = stringEnd(text, i);
      if (depth === 1 && expectKey) keys.push(JSON.parse(text.slice(i, end + 1)) as string);
      expectKey = false;
      i = end;
    } else if (c === "{" || c === "[") {
      depth++;
      expectKey = depth === 1;
    } else if (c === "}" || c === "]") {
      depth--;
    } else if (c === "," && depth === 1) {
      expectKey = true;
    }
  }
  return keys;
}

/** The index of the quote that closes the string opening at `start`. */
function stringEnd(text: string, start: number): number {
  for (let i = start + 1; i < text.length; i++) {
    if (text[i] === "\\") i++;
    else if (text[i] === '"') return i;
  }
  return text.length;
}

function parseBody<T>(schema: z.ZodType<T>, body: unknown, kind: string): T {
  const parsed = schema.safeParse(body);
  if (!parsed.success) {
    throw new HostRequestError(
      `${kind} body: ${formatIssues(parsed.error).replace(/^invalid request: /, "")}`,
    );
  }
  return parsed.data;
}

function componentInformation(body: StartComponentBodyV1): StartComponentBodyV1 {
  return {
    componentId: body.componentId,
    imageRef: body.imageRef,
    maxInstances: body.maxInstances,
    annotations: sortedByUtf8(body.annotations),
    claims: policyClaims(body.claims),
  };
}

function policyClaims(claims: ClaimsV1 | null): ClaimsV1 | null {
  if (claims === null) return null;
  return {
    publicKey: claims.publicKey,
    issuer: claims.issuer,
    issuedAt: claims.issuedAt,
    expiresAt: claims.expiresAt,
    expired: claims.expired,
  };
}

function legacySource(source: LegacySourceV082): LegacySourceV082 {
  return {
    publicKey: source.publicKey ?? null,
    contractId: source.contractId ?? null,
    linkName: source.linkName ?? null,
    capabilities: source.capabilities ?? [],
    issuer: source.issuer ?? null,
    issuedOn: source.issuedOn ?? null,
    expiresAt: source.expiresAt ?? null,
    expired: source.expired ?? false,
  };
}

function legacyTarget(target: LegacyTargetV082): LegacyTargetV082 {
  return {
    publicKey: target.publicKey,
    issuer: target.issuer ?? null,
    contractId: target.contractId ?? null,
    linkName: target.linkName ?? null,
  };
}

function legacyHost(host: LegacyHostV082): LegacyHostV082 {
  return {
    publicKey: host.publicKey,
    latticeId: host.latticeId,
    labels: { ...host.labels },
    clusterIssuers: host.clusterIssuers ?? [],
  };
}

/**
 * Annotations are a `BTreeMap<String, String>` in the host, so they go out sorted by their UTF-8
 * bytes (code point order, which differs from JavaScript's UTF-16 order above U+FFFF).
 * `Object.fromEntries` keeps a `__proto__` key as plain data.
 */
function sortedByUtf8(map: Record<string, string>): Record<string, string> {
  const entries = Object.entries(map);
  entries.sort(([a], [b]) => Buffer.compare(Buffer.from(a, "utf8"), Buffer.from(b, "utf8")));
  return Object.fromEntries(entries);
}
