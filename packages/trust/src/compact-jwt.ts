import type { Signer } from "./signing.js";
import { verifySignature } from "./signing.js";

// The compact JWT shape shared by wascap (component claims, zero-trust invocations) and NATS
// (operator, account and user JWTs): base64url(header) "." base64url(claims) "." base64url(sig),
// no padding, an Ed25519 signature over the ASCII of the first two parts. Only the header and the
// claims differ between the two; their meaning is checked by the callers.

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
 * base64url parts whose first two are JSON objects is reported as malformed, with the reason.
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
  const headerText = Buffer.from(headerPart, "base64url").toString("utf8");
  const header = parseObject(headerText);
  if (!header) return malformed("the header is not a JSON object");
  const claims = parseObject(Buffer.from(claimsPart, "base64url").toString("utf8"));
  if (!claims) return malformed("the claims are not a JSON object");
  if (Buffer.from(signature, "base64url").length !== 64) {
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

function parseObject(text: string): Record<string, unknown> | null {
  try {
    const value: unknown = JSON.parse(text);
    return typeof value === "object" && value !== null && !Array.isArray(value)
      ? (value as Record<string, unknown>)
      : null;
  } catch {
    return null;
  }
}
