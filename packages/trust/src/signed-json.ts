import type { Signer } from "./signing.js";
import { verifySignature } from "./signing.js";

// A signed record is the JSON text of the record without its signature, with
// `,"signature":"<base64url>"` inserted before the final `}`. The signed bytes are therefore the
// stored text minus that member: any verifier, in any language, recovers them by cutting it out,
// with no canonical re-serialization to agree on.

const SIGNATURE_TAIL = /,"signature":"([A-Za-z0-9_-]+)"}$/;

/** The parts of a signed JSON text: the signed bytes (as text) and the signature. */
export interface SignedJsonParts {
  readonly body: string;
  readonly signature: string;
}

/** Serializes `record` (which must not have a `signature` member) and appends its signature. */
export function signJson(record: object, signer: Signer): string {
  const body = JSON.stringify(record);
  if (!body.startsWith("{") || body === "{}") throw new TypeError("signJson needs a non-empty JSON object");
  return `${body.slice(0, -1)},"signature":"${signer.sign(body)}"}`;
}

/** Splits a signed JSON text into signed body and signature; null when it carries none. */
export function splitSignedJson(text: string): SignedJsonParts | null {
  const match = SIGNATURE_TAIL.exec(text);
  if (!match?.[1]) return null;
  return { body: `${text.slice(0, match.index)}}`, signature: match[1] };
}

/** True when `text` carries a valid signature by `publicKey` over its body. Never throws. */
export function verifySignedJson(text: string, publicKey: string): boolean {
  const parts = splitSignedJson(text);
  return parts !== null && verifySignature(publicKey, parts.body, parts.signature);
}
