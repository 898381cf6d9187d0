import type { NormalizedRequest } from "@arbiter/protocol";
import type { ReplayGuard } from "@arbiter/store";
import {
  InvocationReason,
  POLICY_INVOCATION_HEADER,
  policyRequestInvocation,
  type TrustProblem,
  verifyInvocation,
} from "@arbiter/trust";
import type { Msg } from "@nats-io/nats-core";

/** Codes of the request-level checks, beside the invocation checks' `InvocationReason` codes. */
export const RequestTrustReason = {
  /** No `Wasmcloud-Invocation` header. */
  Unsigned: "unsigned",
  /** The token's `iat` is older than `maxTokenAgeMs`. */
  TooOld: "too-old",
  /** The token's `iat` is later than now plus `maxClockSkewMs`. */
  IssuedInFuture: "issued-in-the-future",
  /** The token's id was seen within the replay window (by this or another worker). */
  Replayed: "replayed",
  /** The replay bucket did not answer, so the token could not be shown to be fresh. */
  ReplayUnchecked: "replay-unchecked",
} as const;

const HEADER_NAME = POLICY_INVOCATION_HEADER.toLowerCase();

/**
 * The longest token read, in characters. A policy request's token is about 700; anyone on the bus
 * may send a header of up to the server's max_payload, and decoding and verifying it costs time in
 * proportion, so longer ones are refused unread.
 */
export const MAX_INVOCATION_TOKEN_LENGTH = 8192;

/** Headers that could not be read (nats.js throws on a header name it would not write itself). */
export interface UnreadableHeaders {
  readonly unreadable: string;
}

/**
 * Every value of the {@link POLICY_INVOCATION_HEADER} header of a message, whatever the case of
 * its name (NATS keeps the case a client writes): a request with two tokens is ambiguous, as two
 * readers may each believe another, so the verifier refuses it rather than pick one. Never throws:
 * headers any client may write but nats.js cannot decode come back as {@link UnreadableHeaders}.
 */
export function invocationTokens(msg: Pick<Msg, "headers">): readonly string[] | UnreadableHeaders {
  try {
    const h = msg.headers;
    if (h === undefined) return [];
    const tokens: string[] = [];
    for (const key of h.keys()) {
      if (key.length === HEADER_NAME.length && key.toLowerCase() === HEADER_NAME)
        tokens.push(...h.values(key));
    }
    return tokens;
  } catch (err) {
    return { unreadable: err instanceof Error ? err.message : String(err) };
  }
}

/** What the signature checks found about one request: recorded in its decision and seen by the rules as `trust`. */
export interface TrustResult {
  readonly verified: boolean;
  /** Codes of every failed check; empty when verified. */
  readonly reasons: readonly string[];
  readonly signed: boolean;
  readonly issuer: string | null;
  readonly tokenId: string | null;
  readonly issuedAt: string | null;
  /** The failed checks in words, for the denial message (not recorded separately). */
  readonly problems: readonly TrustProblem<string>[];
}

/** What {@link RequestVerifier} needs. */
export interface RequestVerifierOptions {
  readonly mode: "verify-if-present" | "required";
  readonly issuers: readonly string[];
  readonly policyTopic: string;
  readonly maxTokenAgeMs: number;
  readonly maxClockSkewMs: number;
  readonly guard: ReplayGuard;
}

/**
 * Checks the signature of policy requests: the token in {@link POLICY_INVOCATION_HEADER} must be
 * an invocation from the request's own host to this policy service for the request's kind over
 * its exact bytes, signed by a cluster issuer, recent by its `iat`, and its id not seen before by
 * any worker. The synchronous checks run first; only a token that passes them is claimed in the
 * replay bucket, so a forgery never uses up a real token's id.
 */
export class RequestVerifier {
  readonly #options: RequestVerifierOptions;
  readonly #issuers: ReadonlySet<string>;

  constructor(options: RequestVerifierOptions) {
    this.#options = options;
    this.#issuers = new Set(options.issuers);
  }

  get mode(): "verify-if-present" | "required" {
    return this.#options.mode;
  }

  /** Closes the replay guard. */
  close(): void {
    this.#options.guard.close();
  }

  /**
   * The result for `request` (received as `bytes`) and the token of its header (`""`, undefined or
   * no value when it had none; several values, or headers that could not be read, are refused), or
   * a promise of it when only the replay check remains. Never throws or rejects.
   */
  check(
    request: NormalizedRequest,
    bytes: Uint8Array,
    tokens: string | readonly string[] | UnreadableHeaders | undefined,
    now: Date,
  ): TrustResult | Promise<TrustResult> {
    if (typeof tokens === "object" && "unreadable" in tokens) {
      return unverified(true, null, [
        {
          code: InvocationReason.MalformedToken,
          message: `the request's headers cannot be read, so neither can its ${POLICY_INVOCATION_HEADER} header: ${tokens.unreadable.slice(0, 200)}`,
        },
      ]);
    }
    if (typeof tokens !== "string" && tokens !== undefined && tokens.length > 1) {
      return unverified(true, null, [
        {
          code: InvocationReason.MalformedToken,
          message: `the request has ${tokens.length} ${POLICY_INVOCATION_HEADER} headers; a signed request has one`,
        },
      ]);
    }
    const token = typeof tokens === "string" || tokens === undefined ? tokens : tokens[0];
    if (token === undefined || token === "") {
      return unverified(false, null, [
        {
          code: RequestTrustReason.Unsigned,
          message: `the request has no ${POLICY_INVOCATION_HEADER} header`,
        },
      ]);
    }
    if (token.length > MAX_INVOCATION_TOKEN_LENGTH) {
      return unverified(true, null, [
        {
          code: InvocationReason.MalformedToken,
          message: `the token has ${token.length} characters, more than ${MAX_INVOCATION_TOKEN_LENGTH}`,
        },
      ]);
    }
    const invocation = policyRequestInvocation(
      {
        hostKey: request.host.publicKey,
        lattice: request.host.lattice,
        policyTopic: this.#options.policyTopic,
        kind: request.kind,
        request: bytes,
      },
      token,
    );
    const result = verifyInvocation(invocation, { issuers: this.#issuers, now });
    const problems: TrustProblem<string>[] = [...result.reasons];
    const claims = result.claims;
    if (claims !== null) {
      const ageMs = now.getTime() - claims.iat * 1000;
      if (ageMs > this.#options.maxTokenAgeMs) {
        problems.push({
          code: RequestTrustReason.TooOld,
          message: `the token was issued ${Math.round(ageMs / 1000)} s ago; at most ${this.#options.maxTokenAgeMs / 1000} s are accepted`,
        });
      } else if (-ageMs > this.#options.maxClockSkewMs) {
        problems.push({
          code: RequestTrustReason.IssuedInFuture,
          message: `the token is issued ${Math.round(-ageMs / 1000)} s in the future`,
        });
      }
    }
    if (claims === null || problems.length > 0) return unverified(true, claims, problems);
    return this.#options.guard.claim(claims.jti).then(
      (first) =>
        first
          ? {
              verified: true,
              reasons: [],
              signed: true,
              issuer: claims.iss,
              tokenId: claims.jti,
              issuedAt: isoSeconds(claims.iat),
              problems: [],
            }
          : unverified(true, claims, [
              {
                code: RequestTrustReason.Replayed,
                message: `the token ${JSON.stringify(claims.jti.slice(0, 64))} was used before`,
              },
            ]),
      (err: unknown) =>
        unverified(true, claims, [
          {
            code: RequestTrustReason.ReplayUnchecked,
            message: `the token could not be checked against replays: ${err instanceof Error ? err.message : String(err)}`,
          },
        ]),
    );
  }
}

/** The message of a denial for `trust`. */
export function trustDenial(trust: TrustResult, mode: "verify-if-present" | "required"): string {
  const lead = trust.signed
    ? "the request's signature is not valid"
    : mode === "required"
      ? "Arbiter requires signed policy requests"
      : "the request is not signed";
  return `${lead}: ${trust.problems.map((p) => `${p.message} (${p.code})`).join("; ")}; denied`;
}

function unverified(
  signed: boolean,
  claims: { iss: string; jti: string; iat: number } | null,
  problems: TrustProblem<string>[],
): TrustResult {
  return {
    verified: false,
    reasons: problems.map((p) => p.code),
    signed,
    // Chosen by whoever made the token: bounded, so the record stays within the log's size.
    issuer: claims ? claims.iss.slice(0, 64) : null,
    tokenId: claims ? claims.jti.slice(0, 256) : null,
    issuedAt: claims ? isoSeconds(claims.iat) : null,
    problems,
  };
}

function isoSeconds(seconds: number): string | null {
  const date = new Date(seconds * 1000);
  return Number.isNaN(date.getTime()) ? null : date.toISOString();
}
