import { randomBytes } from "node:crypto";
import { z } from "zod";
import { decodeJwt, encodeJwt, isDecodedJwt, verifyJwtSignature } from "./compact-jwt.js";
import { entityUrl, targetUrl, type WasmcloudEntity } from "./entity-url.js";
import type { InvocationV1 } from "./invocation.js";
import { invocationHash } from "./invocation-hash.js";
import { decodePublicKey } from "./nkey-codec.js";
import type { Signer } from "./signing.js";

/** The only header an invocation token may have, byte for byte (wascap's `ClaimsHeader`). */
export const INVOCATION_JWT_HEADER = '{"typ":"jwt","alg":"Ed25519"}';

/** Stable codes of the reasons an invocation fails verification; each has its own. */
export const InvocationReason = {
  MalformedToken: "malformed-token",
  WrongAlgorithm: "wrong-algorithm",
  BadSignature: "bad-signature",
  UnknownIssuer: "unknown-issuer",
  Expired: "expired",
  NotYetValid: "not-yet-valid",
  TargetMismatch: "target-mismatch",
  OriginMismatch: "origin-mismatch",
  HashMismatch: "hash-mismatch",
  HostIdNotHostKey: "host-id-not-host-key",
} as const;
/** One of {@link InvocationReason}. */
export type InvocationReason = (typeof InvocationReason)[keyof typeof InvocationReason];

/** One failed check: its stable code and what was wrong, in words. */
export interface TrustProblem<Code extends string = InvocationReason> {
  readonly code: Code;
  readonly message: string;
}

/** The claims of an invocation token (wascap revision 3), as checked by {@link verifyInvocation}. */
export const InvocationClaims = z.object({
  jti: z.string().min(1),
  iat: z.number().int(),
  iss: z.string(),
  sub: z.string(),
  exp: z.number().int().optional(),
  nbf: z.number().int().optional(),
  wascap: z.object({ target_url: z.string(), origin_url: z.string(), hash: z.string() }),
  wascap_revision: z.number().int().optional(),
});
export type InvocationClaims = z.infer<typeof InvocationClaims>;

/** The outcome of {@link verifyInvocation}: valid only when `reasons` is empty. */
export interface InvocationVerification {
  readonly valid: boolean;
  /** Every check that failed, in the order the checks run. */
  readonly reasons: readonly TrustProblem[];
  /** The token's claims when they could be read (whether or not they are valid), else null. */
  readonly claims: InvocationClaims | null;
}

/** What {@link verifyInvocation} checks against. */
export interface VerifyInvocationOptions {
  /** The valid cluster issuers (`C…` keys, `WASMCLOUD_CLUSTER_ISSUERS`). */
  readonly issuers: ReadonlySet<string> | readonly string[];
  readonly now: Date;
}

/**
 * Verifies an invocation as a wasmCloud host does: `host_id` is a host key; the token decodes,
 * has exactly the Ed25519 header and a valid signature by its issuer; the issuer is a listed
 * cluster issuer; it is not expired nor before `nbf`; its target URL, origin URL and (for a
 * non-empty `msg`) hash are the invocation's. Every failed check is listed. Never throws.
 */
export function verifyInvocation(
  invocation: InvocationV1,
  options: VerifyInvocationOptions,
): InvocationVerification {
  const reasons: TrustProblem[] = [];
  const fail = (code: InvocationReason, message: string) => reasons.push({ code, message });
  if (!isHostKey(invocation.host_id)) {
    fail(
      InvocationReason.HostIdNotHostKey,
      `host_id ${abbreviate(invocation.host_id)} is not a host public key (N…)`,
    );
  }
  const decoded = decodeJwt(invocation.encoded_claims);
  if (!isDecodedJwt(decoded)) {
    fail(InvocationReason.MalformedToken, `the claims token is malformed: ${decoded.detail}`);
    return { valid: false, reasons, claims: null };
  }
  if (decoded.headerText !== INVOCATION_JWT_HEADER) {
    const alg = decoded.header["alg"];
    fail(
      InvocationReason.WrongAlgorithm,
      `the token header is ${abbreviate(decoded.headerText, 80)}, not ${INVOCATION_JWT_HEADER}${typeof alg === "string" && alg !== "Ed25519" ? ` (algorithm ${JSON.stringify(alg.slice(0, 32))})` : ""}`,
    );
  }
  const parsed = InvocationClaims.safeParse(decoded.claims);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => `${i.path.join(".") || "claims"}: ${i.message}`);
    fail(
      InvocationReason.MalformedToken,
      `the token's claims are not invocation claims: ${issues.join("; ")}`,
    );
    return { valid: false, reasons, claims: null };
  }
  const claims = parsed.data;
  if (!verifyJwtSignature(decoded, claims.iss)) {
    fail(
      InvocationReason.BadSignature,
      `the token's signature is not valid for its issuer ${abbreviate(claims.iss)}`,
    );
  }
  const issuers = options.issuers instanceof Set ? options.issuers : new Set(options.issuers);
  if (!issuers.has(claims.iss)) {
    fail(
      InvocationReason.UnknownIssuer,
      `the issuer ${abbreviate(claims.iss)} is not a valid cluster issuer`,
    );
  }
  const now = Math.floor(options.now.getTime() / 1000);
  if (claims.exp !== undefined && now >= claims.exp) {
    fail(InvocationReason.Expired, `the token expired at ${isoSeconds(claims.exp)}`);
  }
  if (claims.nbf !== undefined && now < claims.nbf) {
    fail(InvocationReason.NotYetValid, `the token is not valid before ${isoSeconds(claims.nbf)}`);
  }
  const origin = entityUrl(invocation.origin);
  const target = targetUrl(invocation.target, invocation.operation);
  if (claims.wascap.target_url !== target) {
    fail(
      InvocationReason.TargetMismatch,
      `the token is for target ${abbreviate(claims.wascap.target_url, 160)}, the invocation's is ${target}`,
    );
  }
  if (claims.wascap.origin_url !== origin) {
    fail(
      InvocationReason.OriginMismatch,
      `the token is from origin ${abbreviate(claims.wascap.origin_url, 160)}, the invocation's is ${origin}`,
    );
  }
  if (invocation.msg.length > 0) {
    const hash = invocationHash(origin, target, invocation.operation, invocation.msg);
    if (claims.wascap.hash !== hash) {
      fail(
        InvocationReason.HashMismatch,
        `the token's hash ${abbreviate(claims.wascap.hash, 80)} is not the invocation's (${hash})`,
      );
    }
  }
  return { valid: reasons.length === 0, reasons, claims };
}

/** Optional claims of a token made by {@link signInvocationClaims}. */
export interface InvocationTokenOptions {
  /** Issued-at; default now. */
  readonly now?: Date;
  /** The token id; default 128 random bits in hex. */
  readonly jti?: string;
  /** `exp`, in seconds after `now`. */
  readonly expiresInSeconds?: number;
  /** `nbf`, in seconds after `now` (negative: before). */
  readonly notBeforeSeconds?: number;
}

/**
 * Signs the claims of an invocation from `origin` to `target`'s `operation` carrying `msg`, with
 * the cluster key `signer`: the `encoded_claims` token. `id` is the invocation id (`sub`).
 */
export function signInvocationClaims(
  invocation: Pick<InvocationV1, "origin" | "target" | "operation" | "msg" | "id">,
  signer: Signer,
  options: InvocationTokenOptions = {},
): string {
  const iat = Math.floor((options.now ?? new Date()).getTime() / 1000);
  const origin = entityUrl(invocation.origin);
  const target = targetUrl(invocation.target, invocation.operation);
  const claims = {
    ...(options.expiresInSeconds !== undefined ? { exp: iat + options.expiresInSeconds } : {}),
    jti: options.jti ?? randomBytes(16).toString("hex"),
    iat,
    iss: signer.publicKey,
    sub: invocation.id,
    ...(options.notBeforeSeconds !== undefined ? { nbf: iat + options.notBeforeSeconds } : {}),
    wascap: {
      target_url: target,
      origin_url: origin,
      hash: invocationHash(origin, target, invocation.operation, invocation.msg),
    },
    wascap_revision: 3,
  };
  return encodeJwt({ typ: "jwt", alg: "Ed25519" }, claims, signer);
}

/** Builds a signed invocation (as a wasmCloud host would send it) from `hostId`. */
export function signInvocation(
  invocation: {
    readonly origin: WasmcloudEntity;
    readonly target: WasmcloudEntity;
    readonly operation: string;
    readonly msg: Uint8Array;
    readonly hostId: string;
    readonly id?: string;
  },
  signer: Signer,
  options: InvocationTokenOptions = {},
): InvocationV1 {
  const id = invocation.id ?? randomBytes(16).toString("hex");
  const body = { ...invocation, id };
  return {
    origin: invocation.origin,
    target: invocation.target,
    operation: invocation.operation,
    msg: invocation.msg,
    id,
    encoded_claims: signInvocationClaims(body, signer, options),
    host_id: invocation.hostId,
    content_length: invocation.msg.length,
    traceContext: {},
  };
}

function isHostKey(key: string): boolean {
  try {
    decodePublicKey(key, "N");
    return true;
  } catch {
    return false;
  }
}

function isoSeconds(seconds: number): string {
  const date = new Date(seconds * 1000);
  return Number.isNaN(date.getTime()) ? String(seconds) : date.toISOString();
}

function abbreviate(text: string, max = 60): string {
  return text.length > max ? `${JSON.stringify(text.slice(0, max))}…` : JSON.stringify(text);
}
