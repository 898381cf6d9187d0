import { createHash } from "node:crypto";
import { gzipSync } from "node:zlib";
import { encodeJwt, type Signer } from "@arbiter/trust";

// A wasmCloud provider archive (`.par.gz`, crate provider-archive 0.16 `archive.rs`): a tar, gzip
// compressed, of `claims.jwt` and one `<arch>-<os>.bin` per target (the host loads
// `x86_64-linux` here). The host decodes the claims without checking their signature and
// requires `wascap.target_hashes[target]` to be the SHA-256 (upper-case hex) of that binary.

/** What a provider's claims say; the hashes are computed from the binaries. */
export interface ProviderArchiveInput {
  /** The provider's public key (V…). */
  readonly subject: string;
  readonly name: string;
  readonly vendor: string;
  /** Target (`x86_64-linux`, …) → binary. */
  readonly binaries: Readonly<Record<string, Uint8Array>>;
  /** The `iss` written in the claims; default the signer's key (another key makes a forgery). */
  readonly claimedIssuer?: string;
}

/** Builds a gzip-compressed provider archive whose claims are signed by `issuer`. */
export function providerArchive(
  input: ProviderArchiveInput,
  issuer: Signer,
): { bytes: Uint8Array; token: string } {
  const targetHashes = Object.fromEntries(
    Object.entries(input.binaries).map(([target, binary]) => [
      target,
      createHash("sha256").update(binary).digest("hex").toUpperCase(),
    ]),
  );
  const claims = {
    jti: createHash("sha256").update(input.subject).digest("hex").slice(0, 22).toUpperCase(),
    iat: Math.floor(Date.now() / 1000),
    iss: input.claimedIssuer ?? issuer.publicKey,
    sub: input.subject,
    wascap: { name: input.name, vendor: input.vendor, target_hashes: targetHashes },
    wascap_revision: 3,
  };
  const token = encodeJwt({ typ: "jwt", alg: "Ed25519" }, claims, issuer);
  const entries: [string, Uint8Array][] = [
    ["claims.jwt", new TextEncoder().encode(token)],
    ...Object.entries(input.binaries).map(([target, binary]): [string, Uint8Array] => [
      `${target}.bin`,
      binary,
    ]),
  ];
  return { bytes: gzipSync(tar(entries)), token };
}

/** A POSIX ustar archive of regular files (mode 0755), ended by two zero blocks. */
function tar(entries: readonly [string, Uint8Array][]): Buffer {
  const blocks: Buffer[] = [];
  for (const [name, data] of entries) {
    const header = Buffer.alloc(512);
    header.write(name, 0, 100, "utf8");
    header.write("0000755\0", 100, "ascii");
    header.write("0000000\0", 108, "ascii");
    header.write("0000000\0", 116, "ascii");
    header.write(`${data.length.toString(8).padStart(11, "0")}\0`, 124, "ascii");
    header.write(
      `${Math.floor(Date.now() / 1000)
        .toString(8)
        .padStart(11, "0")}\0`,
      136,
      "ascii",
    );
    header.write("        ", 148, "ascii");
    header.write("0", 156, "ascii");
    header.write("ustar\0", 257, "ascii");
    header.write("00", 263, "ascii");
    let sum = 0;
    for (const byte of header) sum += byte;
    header.write(`${sum.toString(8).padStart(6, "0")}\0 `, 148, "ascii");
    blocks.push(header, Buffer.from(data), Buffer.alloc((512 - (data.length % 512)) % 512));
  }
  blocks.push(Buffer.alloc(1024));
  return Buffer.concat(blocks);
}
