import { ArbiterError, ErrorCode } from "@arbiter/protocol";

// nkeys.js refuses wasmCloud's M (component) and V (provider) prefixes, so the encoding is written
// out here: base32 (RFC 4648, no padding) over prefix byte(s) ‖ 32-byte key ‖ CRC-16/XMODEM (LE).

/** The nkey roles Arbiter meets, by the letter their public keys start with. */
export const KeyPrefix = {
  A: 0 << 3, // account (issuer of wasmCloud claims)
  C: 2 << 3, // cluster (signs zero-trust invocations)
  M: 12 << 3, // module: a wasmCloud component (actor)
  N: 13 << 3, // server: a wasmCloud host, or an Arbiter worker
  O: 14 << 3, // operator: an Arbiter admin
  U: 20 << 3, // user
  V: 21 << 3, // service: a wasmCloud capability provider
} as const;

/** A public key letter known to {@link KeyPrefix}. */
export type KeyRole = keyof typeof KeyPrefix;

const SEED_PREFIX = 18 << 3;
// base32 characters in prefix ‖ key ‖ CRC: 35 bytes for a public key, 36 for a seed.
const PUBLIC_KEY_LENGTH = 56;
const SEED_LENGTH = 58;
const ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const LOOKUP = new Map([...ALPHABET].map((c, i) => [c, i]));

/** Thrown when a key's text is not a valid nkey of the expected role. */
export class InvalidKeyError extends ArbiterError {
  constructor(message: string, options?: ErrorOptions) {
    super(ErrorCode.InvalidKey, message, options);
    this.name = "InvalidKeyError";
  }
}

/** True when `err` is an {@link InvalidKeyError}. */
export function isInvalidKeyError(err: unknown): err is InvalidKeyError {
  return err instanceof InvalidKeyError;
}

/** Encodes a raw 32-byte Ed25519 public key as an nkey of the given role. */
export function encodePublicKey(role: KeyRole, raw: Uint8Array): string {
  if (raw.length !== 32) throw new InvalidKeyError(`a public key has 32 bytes, got ${raw.length}`);
  return encodeWithChecksum(Uint8Array.of(KeyPrefix[role], ...raw));
}

/** Decodes an nkey public key, checking its checksum and (when given) its role. */
export function decodePublicKey(
  text: string,
  expected?: KeyRole | readonly KeyRole[],
): { role: KeyRole; raw: Uint8Array } {
  if (text.length !== PUBLIC_KEY_LENGTH) {
    throw new InvalidKeyError(
      `${abbreviate(text)} is not a public key: its length is ${text.length}, a public nkey has ${PUBLIC_KEY_LENGTH} characters`,
    );
  }
  const bytes = decodeWithChecksum(text, abbreviate(text));
  if (bytes.length !== 33)
    throw new InvalidKeyError(`${abbreviate(text)} is not a public key (wrong length)`);
  const role = roleOf(bytes[0]!);
  if (!role) throw new InvalidKeyError(`${abbreviate(text)} has an unknown key prefix`);
  checkRole(text, role, expected);
  return { role, raw: bytes.subarray(1) };
}

/** Encodes a raw 32-byte Ed25519 seed as an nkey seed (`S` + role letter). */
export function encodeSeed(role: KeyRole, raw: Uint8Array): string {
  if (raw.length !== 32) throw new InvalidKeyError(`a seed has 32 bytes, got ${raw.length}`);
  const prefix = KeyPrefix[role];
  return encodeWithChecksum(Uint8Array.of(SEED_PREFIX | (prefix >> 5), (prefix & 31) << 3, ...raw));
}

/** Decodes an nkey seed (`SO…`, `SC…`, …) to its role and raw 32-byte Ed25519 seed. */
export function decodeSeed(
  text: string,
  expected?: KeyRole | readonly KeyRole[],
): { role: KeyRole; raw: Uint8Array } {
  if (text.length !== SEED_LENGTH) {
    throw new InvalidKeyError(
      `not an nkey seed: its length is ${text.length}, a seed has ${SEED_LENGTH} characters`,
    );
  }
  const bytes = decodeWithChecksum(text, "the seed");
  if (bytes.length !== 34 || (bytes[0]! & 0xf8) !== SEED_PREFIX) {
    throw new InvalidKeyError("not an nkey seed: a seed starts with S and holds 32 bytes");
  }
  const role = roleOf(((bytes[0]! & 7) << 5) | ((bytes[1]! & 0xf8) >> 3));
  if (!role) throw new InvalidKeyError("the seed has an unknown key prefix");
  checkRole("the seed", role, expected);
  return { role, raw: bytes.subarray(2) };
}

function checkRole(what: string, role: KeyRole, expected?: KeyRole | readonly KeyRole[]): void {
  if (expected === undefined) return;
  const allowed = typeof expected === "string" ? [expected] : expected;
  if (!allowed.includes(role)) {
    throw new InvalidKeyError(
      `${abbreviate(what)} is ${withArticle(role)} key; expected ${allowed.join(" or ")}`,
    );
  }
}

/** `an N`, `a V`: the article as the letter is spoken ("en", "vee"). */
function withArticle(role: KeyRole): string {
  return `${"AMNO".includes(role) ? "an" : "a"} ${role}`;
}

function roleOf(prefix: number): KeyRole | undefined {
  return (Object.keys(KeyPrefix) as KeyRole[]).find((r) => KeyPrefix[r] === prefix);
}

function encodeWithChecksum(payload: Uint8Array): string {
  const crc = crc16(payload);
  return base32Encode(Uint8Array.of(...payload, crc & 0xff, crc >> 8));
}

/** `what` names the text in messages, so that a seed's characters are never shown. */
function decodeWithChecksum(text: string, what: string): Uint8Array {
  const bytes = base32Decode(text, what);
  if (bytes.length < 3) throw new InvalidKeyError(`${what} is too short to be an nkey`);
  const payload = bytes.subarray(0, bytes.length - 2);
  const crc = bytes[bytes.length - 2]! | (bytes[bytes.length - 1]! << 8);
  if (crc !== crc16(payload)) throw new InvalidKeyError(`${what} has an invalid checksum`);
  return payload;
}

function base32Encode(bytes: Uint8Array): string {
  let out = "";
  let buffer = 0;
  let bits = 0;
  for (const byte of bytes) {
    buffer = (buffer << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += ALPHABET[(buffer >> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += ALPHABET[(buffer << (5 - bits)) & 31];
  return out;
}

function base32Decode(text: string, what: string): Uint8Array {
  const out: number[] = [];
  let buffer = 0;
  let bits = 0;
  for (const char of text) {
    const value = LOOKUP.get(char);
    if (value === undefined)
      throw new InvalidKeyError(`${what} is not base32 (character ${JSON.stringify(char)})`);
    buffer = ((buffer << 5) | value) & 0xffff;
    bits += 5;
    if (bits >= 8) {
      out.push((buffer >> (bits - 8)) & 0xff);
      bits -= 8;
    }
  }
  // The encoder pads the last character with zero bits; anything else is a mistyped key.
  if ((buffer & ((1 << bits) - 1)) !== 0)
    throw new InvalidKeyError(`${what} is not canonical base32: its last character has stray bits`);
  return Uint8Array.from(out);
}

function crc16(bytes: Uint8Array): number {
  let crc = 0;
  for (const byte of bytes) {
    crc ^= byte << 8;
    for (let i = 0; i < 8; i++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  }
  return crc;
}

function abbreviate(text: string): string {
  return text.length > 12 ? `${text.slice(0, 8)}…` : text;
}
