import { z } from "zod";

// Arbiter's own records, as stored in JetStream. Each is versioned (V1) and carries an Ed25519
// signature: rule events and snapshots over their own JSON text without the signature member
// (`signJson` in @arbiter/trust); decisions, which are many, over the root of a Merkle tree of the
// batch stored in one message, their inclusion proof added when they are read (`batchSeals` in
// @arbiter/trust).

const publicKey = (prefix: string) =>
  z
    .string()
    .regex(new RegExp(`^${prefix}[A-Z2-7]{55}$`), `expected an nkey public key starting with ${prefix}`);

/** An admin (nkeys operator) public key: `O…`. */
export const AdminPublicKey = publicKey("O");

/** A worker (nkeys host) public key: `N…`, the key that signs a worker's decisions. */
export const WorkerPublicKey = publicKey("N");

/**
 * The id of a deployment: 128 random bits in base32 (RFC 4648 alphabet, no padding). Fixed by the
 * genesis event of a rules stream and named by every later event and snapshot.
 */
export const DeploymentId = z
  .string()
  .regex(/^[A-Z2-7]{26}$/, "expected a deployment id: 26 characters of base32 (A-Z, 2-7)");
export type DeploymentId = z.infer<typeof DeploymentId>;

/** SHA-256 of a stored rule event's exact text (UTF-8), lower-case hex: a link of the chain. */
export const ChainHash = z.string().regex(/^[0-9a-f]{64}$/, "expected a SHA-256 hash in lower-case hex");

/** Types of rule event; the stream sequence of an event is the rules revision it creates. */
export const RuleEventType = z.enum([
  "deployment.created",
  "ruleset.replaced",
  "rule.upserted",
  "rule.removed",
  "worker.enrolled",
  "worker.removed",
]);
export type RuleEventType = z.infer<typeof RuleEventType>;

const ruleEventBase = {
  eventId: z.string().min(1),
  /** ISO-8601 time the admin created the event. */
  at: z.iso.datetime({ offset: true }),
  /** The admin key that signed the event. */
  actor: AdminPublicKey,
  reason: z.string().optional(),
  /**
   * The revision the event was written after; it must land at `previous + 1`. Binding the
   * signature to its position means a signed event replayed later onto the stream is rejected.
   */
  previous: z.number().int().nonnegative(),
  /** The deployment whose history this is (fixed by the genesis event at revision 1). */
  deployment: DeploymentId,
  /**
   * SHA-256 of the exact stored text of the event at `previous` (null only in the genesis event):
   * the history is a hash chain, so a stream refilled with other events no longer links up.
   */
  prev: ChainHash.nullable(),
  signature: z.string().min(1),
};

const WorkerKeyPayload = z.object({
  publicKey: WorkerPublicKey,
  /** A name for people (the worker's id or host); not checked. */
  name: z.string().optional(),
});

/**
 * A signed change to the rules. Payload documents and rules are validated by `@arbiter/rules`
 * when the event is folded, so a structurally valid event with a bad document is skipped there.
 * `deployment.created` is the genesis event (revision 1, `prev` null); `worker.enrolled` and
 * `worker.removed` say which worker keys may sign decisions from that revision on.
 */
export const RuleEventV1 = z.discriminatedUnion("type", [
  z.object({
    ...ruleEventBase,
    type: z.literal("deployment.created"),
    payload: z.object({}),
  }),
  z.object({
    ...ruleEventBase,
    type: z.literal("ruleset.replaced"),
    payload: z.object({ document: z.unknown() }),
  }),
  z.object({
    ...ruleEventBase,
    type: z.literal("rule.upserted"),
    payload: z.object({ rule: z.unknown() }),
  }),
  z.object({
    ...ruleEventBase,
    type: z.literal("rule.removed"),
    payload: z.object({ ruleId: z.string().min(1) }),
  }),
  z.object({
    ...ruleEventBase,
    type: z.literal("worker.enrolled"),
    payload: WorkerKeyPayload,
  }),
  z.object({
    ...ruleEventBase,
    type: z.literal("worker.removed"),
    payload: WorkerKeyPayload,
  }),
]);
export type RuleEventV1 = z.infer<typeof RuleEventV1>;

/** A rule event before it is signed. */
export type UnsignedRuleEventV1 = DistributiveOmit<RuleEventV1, "signature">;

/**
 * A period during which a worker key was enrolled: from the revision of its `worker.enrolled`
 * event up to (not including) the revision of its `worker.removed` event, or still (`to` null).
 */
export const WorkerEnrollmentV1 = z.object({
  publicKey: WorkerPublicKey,
  name: z.string().nullable(),
  from: z.number().int().positive(),
  to: z.number().int().positive().nullable(),
});
export type WorkerEnrollmentV1 = z.infer<typeof WorkerEnrollmentV1>;

/**
 * Snapshot of the folded rules at a revision, kept in KV so a worker need not read all history.
 * It names its deployment and the chain head it summarizes (the revision and the hash of the
 * event stored there), so a worker takes it only when that event is in the stream it follows.
 */
export const RulesSnapshotV1 = z.object({
  revision: z.number().int().nonnegative(),
  deployment: DeploymentId,
  head: z.object({ revision: z.number().int().positive(), hash: ChainHash }),
  document: z.unknown(),
  /** The revision whose event produced `document` (0: none). */
  documentRevision: z.number().int().nonnegative(),
  workers: z.array(WorkerEnrollmentV1),
  at: z.iso.datetime({ offset: true }),
  actor: AdminPublicKey,
  signature: z.string().min(1),
});
export type RulesSnapshotV1 = z.infer<typeof RulesSnapshotV1>;

/** Why a decision was made: a host's request, or a re-evaluation after the rules changed. */
export const DecisionCause = z.enum(["request", "reevaluation"]);
export type DecisionCause = z.infer<typeof DecisionCause>;

/** One evaluation error: a rule whose expression failed at run time (counted as not matching). */
export const RuleErrorV1 = z.object({ ruleId: z.string(), message: z.string() });
export type RuleErrorV1 = z.infer<typeof RuleErrorV1>;

/**
 * Everything a decision was made from and what it was. Replaying `request` against the rules at
 * `revision` with `now = evaluatedAt` reproduces `permitted`, `message` and the rule lists.
 */
export const DecisionV1 = z.object({
  decisionId: z.string().min(1),
  requestId: z.string(),
  lattice: z.string(),
  host: z.string(),
  kind: z.string(),
  cacheKey: z.string(),
  lineage: z.enum(["v1", "v0.82"]).nullable(),
  /** The request as received (parsed JSON), or null when it was not JSON. */
  request: z.unknown(),
  /**
   * Non-null when the request was refused at the edge (bad input, or a signature required and not
   * valid); the rules were not run.
   */
  rejection: z.string().nullable(),
  permitted: z.boolean(),
  message: z.string(),
  decidingRule: z.string().nullable(),
  matchedRules: z.array(z.string()),
  dryRunRules: z.array(z.string()),
  ruleErrors: z.array(RuleErrorV1),
  revision: z.number().int().nonnegative(),
  /**
   * The deployment whose rules history `revision` counts in (null before its genesis event).
   * Absent in records written before decisions named it; verification requires it.
   */
  deployment: DeploymentId.nullable().optional(),
  evaluatedAt: z.iso.datetime({ offset: true }),
  worker: z.object({ id: z.string(), publicKey: z.string() }),
  trust: z.object({
    /** True only for a request whose signature (a wascap invocation token) was checked and held. */
    verified: z.boolean(),
    /** Stable codes of what failed (`unsigned`, `bad-signature`, `replayed`, …); empty when verified. */
    reasons: z.array(z.string()),
    /** Whether the request carried a token; absent in records of workers that do not check. */
    signed: z.boolean().optional(),
    /** The token's issuer (a cluster key), when it could be read. */
    issuer: z.string().nullable().optional(),
    /** The token's id (`jti`), when it could be read. */
    tokenId: z.string().nullable().optional(),
    /** The token's `iat`, ISO-8601, when it could be read. */
    issuedAt: z.string().nullable().optional(),
  }),
  cause: DecisionCause,
  latencyMicros: z.number().nonnegative(),
  /**
   * False when the worker recorded the request and did not answer it (its reply subject was
   * refused), so no host cached it; absent for every answered decision.
   */
  answered: z.boolean().optional(),
  /**
   * Fields cut to keep the record within the decision log's message size, each with its original
   * length (characters, or bytes for `request`, which is then null); absent when nothing was cut.
   */
  truncated: z.record(z.string(), z.number().int().nonnegative()).optional(),
  /** Where the record sits in the batch the worker signed (see `verifySealedJson`). */
  proof: z.object({
    index: z.number().int().nonnegative(),
    size: z.number().int().positive(),
    path: z.array(z.string()),
  }),
  /** The worker's signature over the batch root. */
  signature: z.string().min(1),
});
export type DecisionV1 = z.infer<typeof DecisionV1>;

/** A decision before it is sealed and signed. */
export type UnsignedDecisionV1 = Omit<DecisionV1, "signature" | "proof">;

/**
 * One entry of the active-decision index: what a host has cached for one cache key, as the
 * latest answered request for it left it, updated by re-evaluations. Keyed by (lattice, host,
 * cacheKey); `requestId` stays the host's own id, the only one it honours on the changes topic.
 */
export const ActiveDecisionV1 = z.object({
  lattice: z.string(),
  host: z.string(),
  cacheKey: z.string(),
  requestId: z.string(),
  kind: z.string(),
  permitted: z.boolean(),
  message: z.string(),
  /** The rules revision the outcome is from (the request's, or the last re-evaluation's). */
  revision: z.number().int().nonnegative(),
  /** The decision that put the request in the index, and its message in ARBITER_DECISIONS. */
  decisionId: z.string().min(1),
  seq: z.number().int().positive(),
  /** When the request was decided (its `now`). */
  evaluatedAt: z.iso.datetime({ offset: true }),
  /** Set when the request was refused at the edge: its outcome does not depend on the rules. */
  rejection: z.string().nullable(),
  /** The request as received, evaluated again on each rules change. */
  request: z.unknown(),
  /** The trust result the request was decided with, so a re-evaluation sees the same. */
  trust: z.object({
    verified: z.boolean(),
    reasons: z.array(z.string()),
    signed: z.boolean().optional(),
    issuer: z.string().nullable().optional(),
    tokenId: z.string().nullable().optional(),
  }),
  /** The subject's claims `expiresAt` (unix seconds), when it has one: when the outcome may change on its own. */
  expiresAt: z.number().nullable(),
});
export type ActiveDecisionV1 = z.infer<typeof ActiveDecisionV1>;

/** A change of a host's cached answer, pushed after the rules changed. */
export const RevocationV1 = z.object({
  requestId: z.string(),
  lattice: z.string(),
  host: z.string(),
  cacheKey: z.string(),
  from: z.object({ permitted: z.boolean(), message: z.string().nullable() }),
  to: z.object({ permitted: z.boolean(), message: z.string().nullable() }),
  revision: z.number().int().nonnegative(),
  at: z.iso.datetime({ offset: true }),
});
export type RevocationV1 = z.infer<typeof RevocationV1>;

/**
 * Many revocation records in one message of the revocation log, in the order they were made (a
 * re-evaluation's chunk, cut to fit max_payload). A reader keeps the elements that parse as
 * RevocationV1 and skips the others; messages written before batches hold one bare RevocationV1.
 */
export const RevocationBatchV1 = z.object({
  revocations: z.array(RevocationV1).min(1),
});
export type RevocationBatchV1 = z.infer<typeof RevocationBatchV1>;

/**
 * What is published on the changes topic. Rust hosts read `requestId` and ignore the rest; the
 * Elixir host decodes snake_case `request_id` and requires a string `message`, so both are sent.
 */
export const PolicyOverrideV1 = z.object({
  requestId: z.string(),
  request_id: z.string(),
  permitted: z.boolean(),
  message: z.string(),
});
export type PolicyOverrideV1 = z.infer<typeof PolicyOverrideV1>;

/** Omit that distributes over a union, so each variant keeps its own discriminant. */
export type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;
