/**
 * NATS names Arbiter uses, derived from one prefix (default `arbiter`) so two Arbiter
 * deployments can share a NATS account without touching each other's streams.
 */
export interface ResourceNames {
  readonly rulesStream: string;
  readonly rulesSubject: string;
  readonly rulesBucket: string;
  readonly decisionsStream: string;
  /**
   * The subject the batches of answered requests are stored under, the only one the active
   * index's projection is delivered.
   */
  readonly decisionsSubject: string;
  /**
   * The subject the batches of re-evaluations are stored under, in the same stream (audit reads
   * them with the rest): the projection never indexes a re-evaluation, so the server does not
   * deliver them to it. Only workers may publish there.
   */
  readonly reevaluationsSubject: string;
  /** Wildcard covering every decision subject. */
  readonly decisionsSubjects: string;
  readonly revocationsStream: string;
  readonly revocationsSubjects: string;
  readonly activeBucket: string;
  /**
   * Where nats-server republishes every write of the active bucket (`<prefix>.active.<key>`), so
   * that each worker keeps a mirror of the index without reading it back at each re-evaluation.
   */
  readonly activeRepublishSubjects: string;
  /** The durable consumer of the decisions stream that projects answered decisions into the active index. */
  readonly activeIndexConsumer: string;
  /** The subject revocation records are stored under. */
  readonly revocationsSubject: string;
  /** The durable consumer of the rules stream the workers share to re-evaluate each revision once. */
  readonly revokerConsumer: string;
  /**
   * The work-queue stream of expiry timers: one message per distinct claims expiry of a permitted
   * cached decision, under `<prefix>.expiries.<unix seconds>`.
   */
  readonly expiriesStream: string;
  /** Wildcard covering every expiry timer's subject. */
  readonly expiriesSubjects: string;
  /** The durable consumer of the expiries stream the workers share: each timer is held by one at a time. */
  readonly expiriesConsumer: string;
  /** The KV bucket of signed-request token ids seen recently, shared by the workers against replays. */
  readonly replayBucket: string;
  /**
   * The subject every worker answers (no queue group) with its {@link WorkerStatusV1}: the CLI
   * gathers the answers to learn which workers run, their state and which admin keys they accept.
   */
  readonly statusSubject: string;
  /**
   * The stream of split re-evaluations: parts to do (`<prefix>.scans.part.<revision>.<part>`) and
   * parts done (`<prefix>.scans.done.<revision>.<part>`).
   */
  readonly scansStream: string;
  /** Wildcard covering every subject of {@link ResourceNames.scansStream}. */
  readonly scansSubjects: string;
  /** The durable consumer of the parts to do, shared by the workers (several parts in flight). */
  readonly scanPartsConsumer: string;
}

/** The wasmCloud default policy topic (`--policy-topic`). */
export const DEFAULT_POLICY_TOPIC = "wasmcloud.policy";
/** The wasmCloud default changes topic (`--policy-changes-topic`). */
export const DEFAULT_CHANGES_TOPIC = "wasmcloud.policy.changes";
/** The queue group every decision worker joins. */
export const DEFAULT_QUEUE_GROUP = "arbiter";
/**
 * The inbox prefix (nats.js `inboxPrefix`) of Arbiter's command line and admins; the shipped NATS
 * permissions reserve it for them, and workers answer status requests there.
 */
export const ADMIN_INBOX_PREFIX = "_INBOX_arbiter_admin";
/** The inbox prefix of Arbiter's decision workers, reserved for them by the shipped permissions. */
export const WORKER_INBOX_PREFIX = "_INBOX_arbiter_worker";
/** The default resource prefix. */
export const DEFAULT_PREFIX = "arbiter";

/** Derives stream, subject and bucket names from a prefix (letters, digits, `-` and `_`). */
export function resourceNames(prefix: string = DEFAULT_PREFIX): ResourceNames {
  if (!/^[A-Za-z0-9_-]+$/.test(prefix)) {
    throw new TypeError(
      `invalid resource prefix ${JSON.stringify(prefix)}: use letters, digits, "-" and "_"`,
    );
  }
  const upper = prefix.toUpperCase().replace(/-/g, "_");
  return {
    rulesStream: `${upper}_RULES`,
    rulesSubject: `${prefix}.rules.events`,
    rulesBucket: `${prefix}-rules`,
    decisionsStream: `${upper}_DECISIONS`,
    decisionsSubject: `${prefix}.decisions.recorded`,
    reevaluationsSubject: `${prefix}.decisions.reevaluated`,
    decisionsSubjects: `${prefix}.decisions.>`,
    revocationsStream: `${upper}_REVOCATIONS`,
    revocationsSubjects: `${prefix}.revocations.>`,
    activeBucket: `${prefix}-active`,
    activeRepublishSubjects: `${prefix}.active.>`,
    activeIndexConsumer: `${prefix}-active-index`,
    revocationsSubject: `${prefix}.revocations.recorded`,
    revokerConsumer: `${prefix}-revoker`,
    expiriesStream: `${upper}_EXPIRIES`,
    expiriesSubjects: `${prefix}.expiries.>`,
    expiriesConsumer: `${prefix}-expiries`,
    replayBucket: `${prefix}-replay`,
    statusSubject: `${prefix}.workers.status`,
    scansStream: `${upper}_SCANS`,
    scansSubjects: `${prefix}.scans.>`,
    scanPartsConsumer: `${prefix}-scan-parts`,
  };
}
