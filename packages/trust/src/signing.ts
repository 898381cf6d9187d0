import { createPrivateKey, createPublicKey, type KeyObject, randomBytes, sign, verify } from "node:crypto";
import {
  createAccount,
  createCluster,
  createOperator,
  createServer,
  createUser,
  type KeyPair,
} from "@nats-io/nkeys";
import { decodePublicKey, decodeSeed, encodePublicKey, encodeSeed, type KeyRole } from "./nkey-codec.js";

// Signatures go through node:crypto (OpenSSL): nkeys.js signs through tweetnacl at about 80 a
// second, OpenSSL at about 24,000, and both produce the same Ed25519 signatures.

const PKCS8_ED25519 = Buffer.from("302e020100300506032b657004220420", "hex");
const SPKI_ED25519 = Buffer.from("302a300506032b6570032100", "hex");

/** Something that signs with one nkey: its public key and an Ed25519 `sign` returning base64url. */
export interface Signer {
  readonly publicKey: string;
  readonly role: KeyRole;
  /** Signs the bytes (strings as UTF-8); returns the 64-byte signature as base64url. */
  sign(data: Uint8Array | string): string;
}

/** A freshly generated nkey: its seed (secret) and public key. */
export interface GeneratedKey {
  readonly seed: string;
  readonly publicKey: string;
  readonly role: KeyRole;
}

/** Builds a {@link Signer} from an nkey seed; throws `InvalidKeyError` for a bad seed or role. */
export function createSigner(seed: string, expected?: KeyRole | readonly KeyRole[]): Signer {
  const { role, raw } = decodeSeed(seed.trim(), expected);
  const privateKey = createPrivateKey({
    key: Buffer.concat([PKCS8_ED25519, raw]),
    format: "der",
    type: "pkcs8",
  });
  const spki = createPublicKey(privateKey).export({ format: "der", type: "spki" });
  const publicKey = encodePublicKey(role, spki.subarray(spki.length - 32));
  return {
    publicKey,
    role,
    sign: (data) => sign(null, toBytes(data), privateKey).toString("base64url"),
  };
}

const NKEYS_FACTORIES: Partial<Record<KeyRole, () => KeyPair>> = {
  A: createAccount,
  C: createCluster,
  N: createServer,
  O: createOperator,
  U: createUser,
};

/**
 * Generates a key of the given role: with nkeys.js where it knows the role, and for wasmCloud's
 * M and V roles (which nkeys.js refuses) from 32 random bytes through Arbiter's own codec.
 */
export function generateKey(role: KeyRole): GeneratedKey {
  const factory = NKEYS_FACTORIES[role];
  if (factory) {
    const pair = factory();
    const seed = new TextDecoder().decode(pair.getSeed());
    return { seed, publicKey: pair.getPublicKey(), role };
  }
  const seed = encodeSeed(role, randomBytes(32));
  return { seed, publicKey: createSigner(seed).publicKey, role };
}

const verifyKeys = new Map<string, KeyObject | null>();
const MAX_CACHED_KEYS = 4096;

/**
 * Verifies a base64url Ed25519 signature by an nkey public key. Never throws: a malformed key or
 * signature is simply not valid.
 */
export function verifySignature(publicKey: string, data: Uint8Array | string, signature: string): boolean {
  const key = verifyKeyFor(publicKey);
  if (!key) return false;
  const sig = Buffer.from(signature, "base64url");
  if (sig.length !== 64) return false;
  try {
    return verify(null, toBytes(data), key, sig);
  } catch {
    return false;
  }
}

function verifyKeyFor(publicKey: string): KeyObject | null {
  let key = verifyKeys.get(publicKey);
  if (key !== undefined) return key;
  try {
    const { raw } = decodePublicKey(publicKey);
    key = createPublicKey({ key: Buffer.concat([SPKI_ED25519, raw]), format: "der", type: "spki" });
  } catch {
    key = null;
  }
  if (verifyKeys.size >= MAX_CACHED_KEYS) verifyKeys.clear();
  verifyKeys.set(publicKey, key);
  return key;
}

function toBytes(data: Uint8Array | string): Uint8Array {
  return typeof data === "string" ? Buffer.from(data, "utf8") : data;
}
