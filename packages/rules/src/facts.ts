import { ClaimsV1 } from "@arbiter/protocol";
import { z } from "zod";

const stringMap = z.record(z.string(), z.string());

/**
 * What the rules see of one request: the CEL variables `kind`, `host`, `subject`, `claims`,
 * `invocation`, `input`, `now` and `trust`, all always bound. The caller builds it from a request
 * already validated at the edge; `input` is that request exactly as received (any JSON) and `now`
 * the clock value recorded in the decision, so replaying the same facts gives the same result.
 * `subject` is null only for requests that are about nothing (`kind: "unknown"`). The rules see
 * `claims` as {@link claimsAt} `now` makes them.
 */
export const EvaluationFacts = z.object({
  kind: z.string(),
  host: z.object({ publicKey: z.string(), lattice: z.string(), labels: stringMap }),
  subject: z
    .object({ id: z.string(), imageRef: z.string(), annotations: stringMap, maxInstances: z.number().int() })
    .nullable(),
  claims: ClaimsV1.nullable(),
  invocation: z.object({ interface: z.string(), function: z.string() }).nullable(),
  input: z.unknown(),
  now: z.date(),
  /**
   * What the worker's signature checks found (see `requestSignatures`): `verified`, `signed`, the
   * failed checks' codes in `reasons`, the token's `issuer` and `tokenId` (null when unknown).
   */
  trust: z.looseObject({
    verified: z.boolean(),
    reasons: z.array(z.string()),
    signed: z.boolean().optional(),
    issuer: z.string().nullable().optional(),
    tokenId: z.string().nullable().optional(),
  }),
});
export type EvaluationFacts = z.infer<typeof EvaluationFacts>;

/**
 * The claims as the rules see them at `now`: `expired` is true when the host said so or when `now`
 * has reached `expiresAt` (unix seconds), so a decision made again after the expiry sees it expired
 * however the host flagged it when it asked. Pure; returns `claims` itself when nothing changes.
 */
export function claimsAt(claims: ClaimsV1 | null, now: Date): ClaimsV1 | null {
  if (claims === null || claims.expired || claims.expiresAt === null) return claims;
  return now.getTime() >= claims.expiresAt * 1000 ? { ...claims, expired: true } : claims;
}

/** The names of the CEL variables a `when` expression may use, in the order they are documented. */
export const VARIABLE_NAMES = [
  "kind",
  "host",
  "subject",
  "claims",
  "invocation",
  "input",
  "now",
  "trust",
] as const satisfies readonly (keyof EvaluationFacts)[];

/** One of {@link VARIABLE_NAMES}. */
export type VariableName = (typeof VARIABLE_NAMES)[number];
