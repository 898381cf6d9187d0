import { createHash, randomBytes } from "node:crypto";
import { z } from "zod";
import { decodeJwt, encodeJwt, isDecodedJwt, verifyJwtSignature } from "./compact-jwt.js";
import { decodePublicKey, InvalidKeyError } from "./nkey-codec.js";
import type { Signer } from "./signing.js";
import {
  customSectionData,
  encodeCustomSection,
  encodeWasm,
  isMalformedWasmError,
  parseWasm,
  type WasmBinary,
  type WasmEncoding,
  type WasmSection,
} from "./wasm-sections.js";

// wascap's signed components (crate wascap 0.16, `wasm.rs` and `jwt.rs`): the claims JWT sits in a
// top-level custom section `wasmcloud_jwt` (before wascap 0.9: `jwt`), and since claims revision 3
// `wascap.hash` is the SHA-256, upper-case hex, of the module re-encoded without any such section,
// every section written as id + minimal LEB128 length + content. So a length written with extra
// LEB128 bytes does not change the hash: the encoding of a length carries no meaning.

/** The custom section names that hold a component's claims, newest first. */
export const CLAIMS_SECTION_NAMES = ["wasmcloud_jwt", "jwt"] as const;
/** The name of a claims section. */
export type ClaimsSectionName = (typeof CLAIMS_SECTION_NAMES)[number];

/** The claims revision from which the module hash is defined and checked. */
export const WASCAP_REVISION = 3;
const HEADER = { typ: "jwt", alg: "Ed25519" } as const;

const u64 = z.number().int().nonnegative();

/** The `wascap` member of a component's claims (serde's `Component`; unknown keys are ignored). */
export const ComponentMetadataV1 = z.object({
  name: z.string().nullish(),
  hash: z.string(),
  tags: z.array(z.string()).nullish(),
  rev: z.number().int().nullish(),
  ver: z.string().nullish(),
  call_alias: z.string().nullish(),
  prov: z.boolean().default(false),
});
/** See {@link ComponentMetadataV1}. */
export type ComponentMetadataV1 = z.infer<typeof ComponentMetadataV1>;

/** A component's claims as wascap writes them (serde's `Claims<Component>`; `null` reads as absent). */
export const ComponentClaimsV1 = z.object({
  exp: u64.nullish(),
  jti: z.string(),
  iat: u64,
  iss: z.string().min(1),
  sub: z.string().min(1),
  nbf: u64.nullish(),
  wascap: ComponentMetadataV1,
  wascap_revision: u64.nullish(),
});
/** See {@link ComponentClaimsV1}. */
export type ComponentClaimsV1 = z.infer<typeof ComponentClaimsV1>;

/** Why a component's claims are not valid; each code is stable. */
export type ComponentClaimsReasonCode =
  | "malformed-module"
  | "unsigned"
  | "multiple-claims-sections"
  | "malformed-token"
  | "wrong-algorithm"
  | "invalid-header"
  | "invalid-claims"
  | "issuer-not-account"
  | "subject-not-component"
  | "unknown-issuer"
  | "bad-signature"
  | "unsupported-revision"
  | "hash-mismatch"
  | "expired"
  | "not-yet-valid";

/** One failed check: its code and what was wrong, in words. */
export interface ComponentClaimsReason {
  readonly code: ComponentClaimsReasonCode;
  readonly message: string;
}

/** What {@link inspectComponent} found in a binary. */
export interface ComponentInspection {
  /** True when every check passed. */
  readonly valid: boolean;
  /** Every failed check, in the order they are made; empty when valid. */
  readonly reasons: readonly ComponentClaimsReason[];
  /** Null when the bytes are not a well-formed binary. */
  readonly encoding: WasmEncoding | null;
  /** The section the claims were read from, or null when there is none. */
  readonly section: ClaimsSectionName | null;
  /** The module hash computed from the bytes (null when they do not parse). */
  readonly moduleHash: string | null;
  /** The embedded JWT as found. */
  readonly token: string | null;
  /** The claims, when they match {@link ComponentClaimsV1}. */
  readonly claims: ComponentClaimsV1 | null;
}

/** Options of {@link inspectComponent}. */
export interface InspectComponentOptions {
  /** The clock for `exp`/`nbf`, in seconds since the epoch; default now. */
  readonly nowSeconds?: number;
  /** When given, only these `A…` keys are accepted as issuers. */
  readonly issuers?: readonly string[];
}

/**
 * Reads and verifies a component's embedded claims: the token's header and signature by its
 * `iss`, `iss` an A key and `sub` an M key, the module hash (revision 3), `exp` and `nbf`. Never
 * throws: malformed bytes, an unsigned module and every failed check come back as reasons.
 */
export function inspectComponent(
  bytes: Uint8Array,
  options: InspectComponentOptions = {},
): ComponentInspection {
  let binary: WasmBinary;
  try {
    binary = parseWasm(bytes);
  } catch (err) {
    const message = isMalformedWasmError(err) ? err.message : String(err);
    return invalid({ encoding: null, moduleHash: null }, [{ code: "malformed-module", message }]);
  }
  const moduleHash = hashOf(binary);
  const found = claimsSectionsRead(binary);
  const [first] = found;
  if (first === undefined) {
    return invalid({ encoding: binary.encoding, moduleHash }, [
      { code: "unsigned", message: "the module has no wasmcloud_jwt (or jwt) custom section" },
    ]);
  }
  const section = first.customName as ClaimsSectionName;
  const base = { encoding: binary.encoding, moduleHash, section };
  if (found.length > 1) {
    return invalid({ ...base, token: null }, [
      {
        code: "multiple-claims-sections",
        message: `the module has ${found.length} claims sections; a signer writes one`,
      },
    ]);
  }
  let token: string;
  try {
    token = new TextDecoder("utf-8", { fatal: true }).decode(customSectionData(first));
  } catch {
    return invalid({ ...base, token: null }, [
      { code: "malformed-token", message: "the claims section is not UTF-8" },
    ]);
  }
  const decoded = decodeJwt(token);
  if (!isDecodedJwt(decoded))
    return invalid({ ...base, token }, [{ code: "malformed-token", message: decoded.detail }]);

  const reasons: ComponentClaimsReason[] = [];
  if (decoded.header["alg"] !== HEADER.alg) {
    reasons.push({
      code: "wrong-algorithm",
      message: `the header's alg is ${JSON.stringify(decoded.header["alg"])}, not "Ed25519"`,
    });
  }
  if (decoded.header["typ"] !== HEADER.typ) {
    reasons.push({
      code: "invalid-header",
      message: `the header's typ is ${JSON.stringify(decoded.header["typ"])}, not "jwt"`,
    });
  }
  const parsed = ComponentClaimsV1.safeParse(decoded.claims);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => `${i.path.join(".") || "claims"}: ${i.message}`);
    reasons.push({
      code: "invalid-claims",
      message: `the claims are not component claims: ${issues.join("; ")}`,
    });
    return invalid({ ...base, token }, reasons);
  }
  const claims = parsed.data;
  const issuerIsAccount = keyRole(claims.iss) === "A";
  if (!issuerIsAccount) {
    reasons.push({
      code: "issuer-not-account",
      message: `the issuer ${describeKey(claims.iss)} is not an account (A…) key`,
    });
  }
  if (keyRole(claims.sub) !== "M") {
    reasons.push({
      code: "subject-not-component",
      message: `the subject ${describeKey(claims.sub)} is not a component (M…) key`,
    });
  }
  if (options.issuers !== undefined && !options.issuers.includes(claims.iss)) {
    reasons.push({
      code: "unknown-issuer",
      message: `the issuer ${claims.iss} is not one of the accepted issuers`,
    });
  }
  if (!verifyJwtSignature(decoded, claims.iss)) {
    reasons.push({ code: "bad-signature", message: "the signature does not verify with the issuer's key" });
  }
  const revision = claims.wascap_revision ?? 0;
  if (revision < WASCAP_REVISION) {
    // The host skips the hash check for such claims; Arbiter cannot vouch for the bytes then.
    reasons.push({
      code: "unsupported-revision",
      message: `claims revision ${revision} predates the module hash (revision ${WASCAP_REVISION}); the bytes cannot be checked`,
    });
  } else if (claims.wascap.hash !== moduleHash) {
    reasons.push({
      code: "hash-mismatch",
      message: `the claims' hash ${claims.wascap.hash} is not the module's ${moduleHash}`,
    });
  }
  const now = options.nowSeconds ?? Math.floor(Date.now() / 1000);
  if (claims.exp != null && claims.exp < now) {
    reasons.push({
      code: "expired",
      message: `the claims expired at ${epochSecondsText(claims.exp)}`,
    });
  }
  if (claims.nbf != null && claims.nbf > now) {
    reasons.push({
      code: "not-yet-valid",
      message: `the claims are not valid before ${epochSecondsText(claims.nbf)}`,
    });
  }
  return { valid: reasons.length === 0, reasons, ...base, token, claims };
}

/** The module hash of a binary (revision 3): SHA-256, upper-case hex, over its canonical re-encoding without claims sections. Throws `MalformedWasmError`. */
export function moduleHash(bytes: Uint8Array): string {
  return hashOf(parseWasm(bytes));
}

/** What the claims of {@link signComponent} say besides the hash, which is computed. */
export interface ComponentClaimsInput {
  /** The component's public key (M…). */
  readonly subject: string;
  readonly name?: string;
  readonly tags?: readonly string[];
  readonly rev?: number;
  readonly ver?: string;
  readonly callAlias?: string;
  /** Seconds since the epoch; default now. */
  readonly issuedAt?: number;
  readonly expiresAt?: number;
  readonly notBefore?: number;
  /** The token id; default random. */
  readonly id?: string;
}

/** A signed binary, its token and the claims in it. */
export interface SignedComponent {
  readonly bytes: Uint8Array;
  readonly token: string;
  readonly claims: ComponentClaimsV1;
}

/**
 * Signs a module or component as wascap's `embed_claims` does: drops any claims section, re-encodes
 * the rest canonically, computes the hash and appends a `wasmcloud_jwt` section signed by the
 * account `issuer`. Throws `InvalidKeyError` for a non-A issuer or non-M subject and
 * `MalformedWasmError` for bytes that do not parse.
 */
export function signComponent(
  bytes: Uint8Array,
  input: ComponentClaimsInput,
  issuer: Signer,
): SignedComponent {
  if (issuer.role !== "A") {
    throw new InvalidKeyError(
      `component claims are issued by an account (A…) key, not ${describeKey(issuer.publicKey)}`,
    );
  }
  decodePublicKey(input.subject, "M");
  const stripped = encodeWasm(parseWasm(bytes), (section) => !isClaimsSection(section));
  const hash = sha256Hex(stripped);
  // Members in the order wascap's serde structs declare them, absent options omitted as wascap does.
  const claims: ComponentClaimsV1 = {
    ...(input.expiresAt !== undefined ? { exp: input.expiresAt } : {}),
    jti: input.id ?? randomBytes(16).toString("hex").toUpperCase(),
    iat: input.issuedAt ?? Math.floor(Date.now() / 1000),
    iss: issuer.publicKey,
    sub: input.subject,
    ...(input.notBefore !== undefined ? { nbf: input.notBefore } : {}),
    wascap: {
      ...(input.name !== undefined ? { name: input.name } : {}),
      hash,
      ...(input.tags !== undefined ? { tags: [...input.tags] } : {}),
      ...(input.rev !== undefined ? { rev: input.rev } : {}),
      ...(input.ver !== undefined ? { ver: input.ver } : {}),
      ...(input.callAlias !== undefined ? { call_alias: input.callAlias } : {}),
      prov: false,
    },
    wascap_revision: WASCAP_REVISION,
  };
  const token = encodeJwt(HEADER, claims, issuer);
  const signed = Buffer.concat([
    stripped,
    encodeCustomSection("wasmcloud_jwt", new TextEncoder().encode(token)),
  ]);
  return { bytes: new Uint8Array(signed), token, claims };
}

/** The claims a wasmCloud 1.x host puts in its policy request for these component claims. */
export function policyRequestClaims(claims: ComponentClaimsV1, nowSeconds = Math.floor(Date.now() / 1000)) {
  return {
    publicKey: claims.sub,
    issuer: claims.iss,
    issuedAt: String(claims.iat),
    expiresAt: claims.exp ?? null,
    expired: claims.exp != null && nowSeconds > claims.exp,
  };
}

/**
 * The claims sections the host would consider, in the order it meets them (wascap `extract_claims`
 * walks nested modules and components where they sit): `jwt` at any depth, `wasmcloud_jwt` only
 * at the top level. The host takes the first; Arbiter refuses a binary with more than one.
 */
function claimsSectionsRead(binary: WasmBinary, depth = 0): WasmSection[] {
  return binary.sections.flatMap((section) => {
    if (section.nested) return claimsSectionsRead(section.nested, depth + 1);
    if (section.customName === "jwt" || (section.customName === "wasmcloud_jwt" && depth === 0))
      return [section];
    return [];
  });
}

function isClaimsSection(section: WasmSection): boolean {
  return (
    section.customName !== undefined &&
    (CLAIMS_SECTION_NAMES as readonly string[]).includes(section.customName)
  );
}

function hashOf(binary: WasmBinary): string {
  return sha256Hex(encodeWasm(binary, (section) => !isClaimsSection(section)));
}

/**
 * A time in seconds since the epoch as ISO 8601, or as `N s after the epoch` when it lies past
 * what a JavaScript date holds (about year 275760): claims are u64 seconds, and any u64 is valid.
 */
export function epochSecondsText(seconds: number): string {
  const date = new Date(seconds * 1000);
  return Number.isNaN(date.getTime()) ? `${seconds} s after the epoch` : date.toISOString();
}

function sha256Hex(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex").toUpperCase();
}

function keyRole(key: string): string | null {
  try {
    return decodePublicKey(key).role;
  } catch {
    return null;
  }
}

function describeKey(key: string): string {
  const role = keyRole(key);
  const shown = key.length > 12 ? `${key.slice(0, 8)}…` : JSON.stringify(key);
  return role === null ? `${shown} (not an nkey)` : `${shown} (a ${role}… key)`;
}

function invalid(
  found: {
    encoding: WasmEncoding | null;
    moduleHash: string | null;
    section?: ClaimsSectionName;
    token?: string | null;
  },
  reasons: ComponentClaimsReason[],
): ComponentInspection {
  return {
    valid: false,
    reasons,
    encoding: found.encoding,
    section: found.section ?? null,
    moduleHash: found.moduleHash,
    token: found.token ?? null,
    claims: null,
  };
}
