import { hash } from "node:crypto";
import type { Signer } from "./signing.js";
import { verifySignature } from "./signing.js";

// High-rate records (decisions) are signed in batches: the records' texts are the leaves of a
// Merkle tree (RFC 6962 hashing: leaf = SHA-256(0x00 ‖ text), node = SHA-256(0x01 ‖ left ‖ right),
// an odd last node is promoted), the root is signed once, and every record carries its own
// inclusion proof. Each record stays verifiable on its own, for one signature per batch.
//
// A sealed record is its JSON text without `proof` and `signature`, with
// `,"proof":{"index":I,"size":N,"path":["…",…]},"signature":"…"}` inserted before the final `}`.

const NODE = Buffer.from([1]);
const SEALED_TAIL =
  /,"proof":\{"index":(\d+),"size":(\d+),"path":\[((?:"[A-Za-z0-9_-]+"(?:,"[A-Za-z0-9_-]+")*)?)\]\},"signature":"([A-Za-z0-9_-]+)"}$/;

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
  if (bodies.length === 0) throw new TypeError("sealBatch needs at least one record");
  if (bodies.some((body) => !body.startsWith("{") || !body.endsWith("}") || body === "{}")) {
    throw new TypeError("sealBatch needs non-empty JSON objects");
  }
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
  const root = levels.at(-1)![0]!;
  const signature = signer.sign(signedMessage(bodies.length, root));
  return bodies.map((body, index) => {
    const path: string[] = [];
    let at = index;
    for (const level of levels.slice(0, -1)) {
      const sibling = at % 2 === 1 ? level[at - 1] : level[at + 1];
      if (sibling) path.push(sibling.toString("base64url"));
      at = Math.floor(at / 2);
    }
    const proof = `{"index":${index},"size":${bodies.length},"path":[${path.map((p) => `"${p}"`).join(",")}]}`;
    return `${body.slice(0, -1)},"proof":${proof},"signature":"${signature}"}`;
  });
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

/** True when `text` is sealed and its proof leads to a root signed by `publicKey`. Never throws. */
export function verifySealedJson(text: string, publicKey: string): boolean {
  const parts = splitSealedJson(text);
  if (!parts) return false;
  const { index, size, path } = parts.proof;
  if (!Number.isSafeInteger(size) || index >= size) return false;
  let hash = leafHash(parts.body);
  let at = index;
  let count = size;
  let used = 0;
  while (count > 1) {
    const hasSibling = at % 2 === 1 || at + 1 < count;
    if (hasSibling) {
      const sibling = path[used++];
      if (sibling === undefined) return false;
      const bytes = Buffer.from(sibling, "base64url");
      if (bytes.length !== 32) return false;
      hash = at % 2 === 1 ? nodeHash(bytes, hash) : nodeHash(hash, bytes);
    }
    at = Math.floor(at / 2);
    count = Math.ceil(count / 2);
  }
  return used === path.length && verifySignature(publicKey, signedMessage(size, hash), parts.signature);
}

function leafHash(body: string): Buffer {
  // "\0" is the single byte 0x00 in UTF-8: the RFC 6962 leaf prefix.
  return hash("sha256", `\0${body}`, "buffer");
}

function nodeHash(left: Buffer, right: Buffer): Buffer {
  return hash("sha256", Buffer.concat([NODE, left, right]), "buffer");
}

/** What is signed: a domain tag, the batch size (which fixes the tree's shape) and the root. */
function signedMessage(size: number, root: Buffer): string {
  return `arbiter-sealed-batch-v1:${size}:${root.toString("hex")}`;
}
