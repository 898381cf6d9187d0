import { hash } from "node:crypto";
import type { Signer } from "./signing.js";
import { verifySignature } from "./signing.js";

// High-rate records (decisions) are signed in batches: the records' texts are the leaves of a
// Merkle tree (RFC 6962 hashing: leaf = SHA-256(0x00 ‖ text), node = SHA-256(0x01 ‖ left ‖ right),
// an odd last node is promoted) and the root is signed once. A record is sealed by appending its
// inclusion proof and the batch signature, which makes it verifiable on its own. Proofs follow
// from the batch, so a batch can be stored as texts plus one signature and sealed when read.
//
// A sealed record is its JSON text without `proof` and `signature`, with
// `,"proof":{"index":I,"size":N,"path":["…",…]},"signature":"…"}` inserted before the final `}`.

/** 0x01 ‖ left ‖ right, reused: hashing is synchronous, so one buffer serves every node. */
const NODE_INPUT = Buffer.alloc(65, 1);
const SEALED_TAIL =
  /,"proof":\{"index":(\d+),"size":(\d+),"path":\[((?:"[A-Za-z0-9_-]+"(?:,"[A-Za-z0-9_-]+")*)?)\]\},"signature":"([A-Za-z0-9_-]+)"}$/;
const BATCH_SIGNATURE = /^[A-Za-z0-9_-]+$/;

/** Where a record sits in its signed batch, and the sibling hashes up to the root (base64url). */
export interface InclusionProof {
  readonly index: number;
  readonly size: number;
  readonly path: readonly string[];
}

/**
 * Signs a batch of JSON object texts with one signature and returns each text sealed (proof and
 * signature appended), in the same order. Throws TypeError for an empty batch or a non-object text.
 */
export function sealBatch(bodies: readonly string[], signer: Signer): string[] {
  const bytes = bodies.map((body) => Buffer.from(body));
  const seals = batchSeals(bytes, signBatch(bytes, signer));
  return bodies.map((body, i) => `${body.slice(0, -1)}${seals[i]}`);
}

/**
 * The batch signature of JSON object texts, given as UTF-8 bytes: the signer's signature (base64url)
 * over the root of their Merkle tree. Throws TypeError for an empty batch or a body that is not a
 * non-empty JSON object.
 */
export function signBatch(bodies: readonly Uint8Array[], signer: Signer): string {
  const levels = merkleLevels(bodies);
  return signer.sign(signedMessage(bodies.length, levels.at(-1)![0]!));
}

/**
 * The batch signature of `size` bodies whose Merkle root is `root` (see {@link signBatch}), for a
 * root computed elsewhere (a {@link MerkleThread}).
 */
export function signBatchRoot(size: number, root: Uint8Array, signer: Signer): string {
  return signer.sign(signedMessage(size, Buffer.from(root.buffer, root.byteOffset, root.byteLength)));
}

/**
 * Each body's seal, in order, for a batch signed with `signature` (see {@link signBatch}): the ASCII
 * text that replaces the body's final `}` to seal it (`,"proof":{…},"signature":"…"}`). Computes the
 * proofs; does not check the signature. Throws TypeError for an empty batch, a body that is not a
 * non-empty JSON object, or a signature that is not base64url.
 */
export function batchSeals(bodies: readonly Uint8Array[], signature: string): string[] {
  if (!BATCH_SIGNATURE.test(signature)) throw new TypeError("a batch signature is base64url text");
  const levels = merkleLevels(bodies);
  const size = bodies.length;
  // A node is a sibling on many records' paths: encode each one once.
  const encoded = levels.map((row) => new Array<string | undefined>(row.length));
  const seals: string[] = [];
  for (let index = 0; index < size; index++) {
    let path = "";
    let at = index;
    for (let level = 0; level < levels.length - 1; level++) {
      const sibling = at % 2 === 1 ? at - 1 : at + 1;
      const node = levels[level]![sibling];
      if (node !== undefined) {
        const row = encoded[level]!;
        let text = row[sibling];
        if (text === undefined) {
          text = node.toString("base64url");
          row[sibling] = text;
        }
        path += path === "" ? `"${text}"` : `,"${text}"`;
      }
      at = Math.floor(at / 2);
    }
    seals.push(`,"proof":{"index":${index},"size":${size},"path":[${path}]},"signature":"${signature}"}`);
  }
  return seals;
}

/**
 * True when `signature` is `publicKey`'s batch signature over `bodies` (see {@link signBatch}):
 * one signature check for a whole stored batch. Never throws.
 */
export function verifyBatch(bodies: readonly Uint8Array[], signature: string, publicKey: string): boolean {
  if (!BATCH_SIGNATURE.test(signature)) return false;
  try {
    const levels = merkleLevels(bodies);
    return verifySignature(publicKey, signedMessage(bodies.length, levels.at(-1)![0]!), signature);
  } catch {
    return false;
  }
}

/** The tree's rows, leaves first, root last. */
function merkleLevels(bodies: readonly Uint8Array[]): Buffer[][] {
  if (bodies.length === 0) throw new TypeError("a sealed batch needs at least one record");
  const levels: Buffer[][] = [bodies.map(leafHash)];
  while (levels.at(-1)!.length > 1) {
    const below = levels.at(-1)!;
    const above: Buffer[] = [];
    for (let i = 0; i < below.length; i += 2) {
      const right = below[i + 1];
      above.push(right ? nodeHash(below[i]!, right) : below[i]!);
    }
    levels.push(above);
  }
  return levels;
}

/** Splits a sealed text into its signed body, proof and signature; null when it is not sealed. */
export function splitSealedJson(
  text: string,
): { body: string; proof: InclusionProof; signature: string } | null {
  const match = SEALED_TAIL.exec(text);
  if (!match) return null;
  const path = match[3] ? match[3].slice(1, -1).split('","') : [];
  return {
    body: `${text.slice(0, match.index)}}`,
    proof: { index: Number(match[1]), size: Number(match[2]), path },
    signature: match[4]!,
  };
}

/**
 * What the batch signature of a sealed text signs (`arbiter-sealed-batch-v1:{size}:{root hex}`,
 * the root computed from the text's body and proof) and the signature; null when the text is not
 * sealed or its proof does not lead to a root. Records of one batch give the same pair, so their
 * signature is checked once. Never throws.
 */
export function sealedSignedMessage(text: string): { message: string; signature: string } | null {
  const parts = splitSealedJson(text);
  if (!parts) return null;
  const { index, size, path } = parts.proof;
  if (!Number.isSafeInteger(size) || index >= size) return null;
  let hash: Buffer;
  try {
    hash = leafHash(Buffer.from(parts.body));
  } catch {
    return null;
  }
  let at = index;
  let count = size;
  let used = 0;
  while (count > 1) {
    const hasSibling = at % 2 === 1 || at + 1 < count;
    if (hasSibling) {
      const sibling = path[used++];
      if (sibling === undefined) return null;
      const bytes = Buffer.from(sibling, "base64url");
      if (bytes.length !== 32) return null;
      hash = at % 2 === 1 ? nodeHash(bytes, hash) : nodeHash(hash, bytes);
    }
    at = Math.floor(at / 2);
    count = Math.ceil(count / 2);
  }
  if (used !== path.length) return null;
  return { message: signedMessage(size, hash), signature: parts.signature };
}

/** True when `text` is sealed and its proof leads to a root signed by `publicKey`. Never throws. */
export function verifySealedJson(text: string, publicKey: string): boolean {
  const signed = sealedSignedMessage(text);
  return signed !== null && verifySignature(publicKey, signed.message, signed.signature);
}

/** 0x00 ‖ body, reused and grown as needed: copying into it is cheaper than a new buffer per leaf. */
let leafInput = Buffer.alloc(4096);

function leafHash(body: Uint8Array): Buffer {
  const length = body.length;
  // "{}" and anything not framed by braces is refused: a seal replaces the final "}".
  if (length < 3 || body[0] !== 0x7b || body[length - 1] !== 0x7d) {
    throw new TypeError("a sealed batch holds non-empty JSON objects");
  }
  if (leafInput.length < length + 1) leafInput = Buffer.alloc(2 * (length + 1));
  leafInput.set(body, 1);
  return hash("sha256", leafInput.subarray(0, length + 1), "buffer");
}

function nodeHash(left: Buffer, right: Buffer): Buffer {
  NODE_INPUT.set(left, 1);
  NODE_INPUT.set(right, 33);
  return hash("sha256", NODE_INPUT, "buffer");
}

/** What is signed: a domain tag, the batch size (which fixes the tree's shape) and the root. */
function signedMessage(size: number, root: Buffer): string {
  return `arbiter-sealed-batch-v1:${size}:${root.toString("hex")}`;
}
