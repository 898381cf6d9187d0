import { z } from "zod";

// Wire types of the policy API as real wasmCloud hosts serialize them (host crate `policy.rs`,
// v1.0 to v1.9; the 0.82 Rust host). Hosts send `null` rather than omitting a field, so fields
// are nullable, not optional, exactly where the host's types are `Option`.

/**
 * A JSON object of strings (labels, annotations). An object with a catch-all rather than
 * `z.record`: the same check, at a third of the cost on the decision path.
 */
const stringMap = z.object({}).catchall(z.string());

/** Claims of a signed component or provider as a 1.x host reports them (`issuedAt` is a string). */
export const ClaimsV1 = z.object({
  publicKey: z.string(),
  issuer: z.string(),
  issuedAt: z.string(),
  expiresAt: z.number().int().nullable(),
  expired: z.boolean(),
});
export type ClaimsV1 = z.infer<typeof ClaimsV1>;

/** The host asking (1.x). */
export const HostInfoV1 = z.object({
  publicKey: z.string().min(1),
  lattice: z.string(),
  labels: stringMap,
});
export type HostInfoV1 = z.infer<typeof HostInfoV1>;

/** Body of a `startComponent` request; also the `target` of a `performInvocation`. */
export const StartComponentBodyV1 = z.object({
  componentId: z.string(),
  imageRef: z.string(),
  maxInstances: z.number().int().nonnegative(),
  annotations: stringMap,
  claims: ClaimsV1.nullable(),
});
export type StartComponentBodyV1 = z.infer<typeof StartComponentBodyV1>;

/** Body of a `startProvider` request. */
export const StartProviderBodyV1 = z.object({
  providerId: z.string(),
  imageRef: z.string(),
  annotations: stringMap,
  claims: ClaimsV1.nullable(),
});
export type StartProviderBodyV1 = z.infer<typeof StartProviderBodyV1>;

/** Body of a `performInvocation` request: the claims sit inside `target`. */
export const PerformInvocationBodyV1 = z.object({
  interface: z.string(),
  function: z.string(),
  target: StartComponentBodyV1,
});
export type PerformInvocationBodyV1 = z.infer<typeof PerformInvocationBodyV1>;

const requestEnvelope = {
  requestId: z.string().min(1).max(256),
  version: z.string(),
  host: HostInfoV1,
};

/**
 * A 1.x policy request. `kind: "unknown"` is the host's catch-all variant (its body serializes
 * as `null`); any other kind string is invalid.
 */
export const PolicyRequestV1 = z.discriminatedUnion("kind", [
  z.object({ ...requestEnvelope, kind: z.literal("startComponent"), request: StartComponentBodyV1 }),
  z.object({ ...requestEnvelope, kind: z.literal("startProvider"), request: StartProviderBodyV1 }),
  z.object({ ...requestEnvelope, kind: z.literal("performInvocation"), request: PerformInvocationBodyV1 }),
  z.object({ ...requestEnvelope, kind: z.literal("unknown"), request: z.unknown() }),
]);
export type PolicyRequestV1 = z.infer<typeof PolicyRequestV1>;

/** The request kinds a 1.x host sends. */
export const RequestKindV1 = z.enum(["startComponent", "startProvider", "performInvocation", "unknown"]);
export type RequestKindV1 = z.infer<typeof RequestKindV1>;

/** The answer every host lineage expects; unknown fields are ignored by hosts. */
export const PolicyResponseV1 = z.object({
  requestId: z.string(),
  permitted: z.boolean(),
  message: z.string().nullable(),
});
export type PolicyResponseV1 = z.infer<typeof PolicyResponseV1>;

/** The subject of a 0.82 request: empty for starts, the invoking entity for invocations. */
export const LegacySourceV082 = z.object({
  publicKey: z.string().nullish(),
  contractId: z.string().nullish(),
  linkName: z.string().nullish(),
  capabilities: z.array(z.string()).nullish(),
  issuer: z.string().nullish(),
  issuedOn: z.string().nullish(),
  expiresAt: z.number().int().nullish(),
  expired: z.boolean().nullish(),
});
export type LegacySourceV082 = z.infer<typeof LegacySourceV082>;

/** The entity a 0.82 request is about (the actor or provider started, or invoked). */
export const LegacyTargetV082 = z.object({
  publicKey: z.string(),
  issuer: z.string().nullish(),
  contractId: z.string().nullish(),
  linkName: z.string().nullish(),
});
export type LegacyTargetV082 = z.infer<typeof LegacyTargetV082>;

/** The asking host in the 0.82 format. */
export const LegacyHostV082 = z.object({
  publicKey: z.string().min(1),
  latticeId: z.string(),
  labels: stringMap,
  clusterIssuers: z.array(z.string()).nullish(),
});
export type LegacyHostV082 = z.infer<typeof LegacyHostV082>;

/** The actions of a 0.82 (and Elixir) host. */
export const LegacyActionV082 = z.enum(["start_actor", "start_provider", "perform_invocation"]);
export type LegacyActionV082 = z.infer<typeof LegacyActionV082>;

/** A 0.82 (or Elixir host) policy request. */
export const PolicyRequestV082 = z.object({
  requestId: z.string().min(1).max(256),
  source: LegacySourceV082,
  target: LegacyTargetV082,
  host: LegacyHostV082,
  action: LegacyActionV082,
});
export type PolicyRequestV082 = z.infer<typeof PolicyRequestV082>;
