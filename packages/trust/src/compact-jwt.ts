import { countWrittenKeys, findDuplicateKey } from "@arbiter/protocol";
import type { Signer } from "./signing.js";
import { verifySignature } from "./signing.js";

// The compact JWT shape shared by wascap (component claims, zero-trust invocations) and NATS
// (operator, account and user JWTs): base64url(header) "." base64url(claims) "." base64url(sig),
// no padding, an Ed25519 signature over the ASCII of the first two parts. Only the header and the
// claims differ between the two; their meaning is checked by the callers. Decoding is as strict as
// wascap's (Rust base64 without padding, serde_json into structs): what one reader refuses, no
// other may believe, so a token that the wasmCloud host would refuse does not verify here either.

/** A compact JWT split into its parts, before anything in it is believed. */
export interface DecodedJwt {
  /** The header object as decoded (unchecked). */
  readonly header: Record<string, unknown>;
  /** The claims object as decoded (unchecked). */
  readonly claims: Record<string, unknown>;
  /** The exact header JSON text, for callers that require a byte-exact header. */
  readonly headerText: string;
  /** `header.claims` as it appears in the token: the signed bytes. */
  readonly signingInput: string;
  /** The signature, base64url. */
  readonly signature: string;
}

/** Why a token could not be decoded; `detail` says what was wrong in words. */
export interface MalformedJwt {
  readonly malformed: true;
  readonly detail: string;
}

const BASE64URL = /^[A-Za-z0-9_-]*$/;

/** Encodes and signs `claims` under `header`; the signer's key is not added to the claims. */
export function encodeJwt(header: object, claims: object, signer: Signer): string {
  const signingInput = `${base64urlJson(header)}.${base64urlJson(claims)}`;
  return `${signingInput}.${signer.sign(signingInput)}`;
}

/**
 * Splits a compact JWT and decodes its header and claims. Never throws: anything that is not three
 * canonical base64url parts (no padding, unused trailing bits zero) whose first two are UTF-8 JSON
 * objects, with no key repeated in one object and no lone surrogate, is reported as malformed.
 */
export function decodeJwt(token: string): DecodedJwt | MalformedJwt {
  if (typeof token !== "string") return malformed("the token is not a string");
  const parts = token.split(".");
  if (parts.length !== 3) return malformed(`a JWT has 3 dot-separated parts, this one has ${parts.length}`);
  const [headerPart, claimsPart, signature] = parts as [string, string, string];
  for (const [name, part] of [
    ["header", headerPart],
    ["claims", claimsPart],
    ["signature", signature],
  ] as const) {
    if (part.length === 0) return malformed(`the ${name} part is empty`);
    if (!BASE64URL.test(part)) return malformed(`the ${name} part is not base64url`);
  }
  const headerBytes = canonicalBase64url(headerPart);
  if (!headerBytes) return malformed("the header part is not canonical base64url");
  const claimsBytes = canonicalBase64url(claimsPart);
  if (!claimsBytes) return malformed("the claims part is not canonical base64url");
  const signatureBytes = canonicalBase64url(signature);
  if (!signatureBytes) return malformed("the signature part is not canonical base64url");
  const headerText = utf8(headerBytes);
  if (headerText === null) return malformed("the header is not UTF-8");
  const header = parseObject(headerText, "the header is", "the header repeats");
  if (typeof header === "string") return malformed(header);
  const claimsText = utf8(claimsBytes);
  if (claimsText === null) return malformed("the claims are not UTF-8");
  const claims = parseObject(claimsText, "the claims are", "the claims repeat");
  if (typeof claims === "string") return malformed(claims);
  if (signatureBytes.length !== 64) {
    return malformed("the signature is not 64 bytes");
  }
  return { header, claims, headerText, signingInput: `${headerPart}.${claimsPart}`, signature };
}

/** True when `decoded` was decoded rather than refused. */
export function isDecodedJwt(decoded: DecodedJwt | MalformedJwt): decoded is DecodedJwt {
  return !("malformed" in decoded);
}

/** True when the token's signature verifies with `publicKey` (an nkey). Never throws. */
export function verifyJwtSignature(decoded: DecodedJwt, publicKey: string): boolean {
  return verifySignature(publicKey, decoded.signingInput, decoded.signature);
}

function malformed(detail: string): MalformedJwt {
  return { malformed: true, detail };
}

function base64urlJson(value: object): string {
  return Buffer.from(JSON.stringify(value), "utf8").toString("base64url");
}

/** The bytes of a base64url part (already known to use only its alphabet), or null when not canonical. */
function canonicalBase64url(part: string): Buffer | null {
  // A length of 1 mod 4 holds no whole byte; otherwise the last character's unused bits must be
  // zero, or several spellings of one token would verify (and dedupe) as different tokens.
  const rest = part.length % 4;
  if (rest === 1) return null;
  if (rest !== 0) {
    const last = BASE64URL_ALPHABET.indexOf(part[part.length - 1]!);
    if ((last & (rest === 2 ? 0x0f : 0x03)) !== 0) return null;
  }
  return Buffer.from(part, "base64url");
}

const BASE64URL_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

const strictUtf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

function utf8(bytes: Uint8Array): string | null {
  try {
    return strictUtf8.decode(bytes);
  } catch {
    return null;
  }
}

// A lone surrogate can only be written as an escape, as the text is valid UTF-8.
const LONE_SURROGATE =
  /\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F][0-9a-fA-F]{2})|(?<!\\u[dD][89abAB][0-9a-fA-F]{2})\\u[dD][c-fC-F][0-9a-fA-F]{2}/;
/** Nesting deeper than this is not searched to name a repeated key; no JWT's claims nest so deep. */
const MAX_KEY_DEPTH = 32;

/** How many keys the objects in a parsed JSON value hold, at every depth. */
function countKeys(root: unknown): number {
  let keys = 0;
  const pending: unknown[] = [root];
  while (pending.length > 0) {
    const value = pending.pop();
    if (typeof value !== "object" || value === null) continue;
    if (Array.isArray(value)) {
      for (const item of value) pending.push(item);
    } else {
      for (const key in value) {
        keys++;
        pending.push((value as Record<string, unknown>)[key]);
      }
    }
  }
  return keys;
}

/** The object `text` holds, or what is wrong with it, in words (`is`/`repeats`: "the header is"). */
function parseObject(text: string, is: string, repeats: string): Record<string, unknown> | string {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return `${is} not a JSON object`;
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) return `${is} not a JSON object`;
  // The text writes more keys than the value holds exactly when an object repeats one; only then
  // is it scanned again to name the key.
  if (countWrittenKeys(text) !== countKeys(value)) {
    const repeated = findDuplicateKey(text, MAX_KEY_DEPTH);
    return `${repeats} the key ${JSON.stringify((repeated?.key ?? "").slice(0, 64))}`;
  }
  if (LONE_SURROGATE.test(text)) return `${is} not valid: a string holds a lone surrogate`;
  return value as Record<string, unknown>;
}
