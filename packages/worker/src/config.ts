import {
  ArbiterError,
  DEFAULT_CHANGES_TOPIC,
  DEFAULT_POLICY_TOPIC,
  DEFAULT_PREFIX,
  DEFAULT_QUEUE_GROUP,
  DeploymentId,
  ErrorCode,
  WorkerPublicKey,
} from "@arbiter/protocol";
import { DEFAULT_MIRROR_MAX_BYTES, DEFAULT_MIRROR_MAX_KEYS } from "@arbiter/store";
import { decodePublicKey } from "@arbiter/trust";
import { z } from "zod";

/**
 * Entries per part of a split re-evaluation unless configured: with each worker's mirror of the
 * index a scan of this many takes a few tenths of a second alone, less than parts' writes and pulls.
 */
export const DEFAULT_SCAN_PART_SIZE = 20_000;

/** The smallest `maxPayloadBytes` a worker takes. */
export const MIN_PAYLOAD_BYTES = 4096;

/**
 * A topic the worker subscribes or publishes on: one literal NATS subject. A wildcard policy topic
 * would take any message as a request, and a space or an empty token makes no subject at all.
 */
/**
 * The reply subjects a worker answers unless told otherwise: nats.js and the wasmCloud host's own
 * inboxes (`_INBOX.`), and the `_R_.` subjects nats-server puts in place of the requester's reply
 * when a request crosses a service import, as hosts' requests do in the shipped permissions
 * (README, "Deploying on NATS"). Only the server makes `_R_.` subjects in the account that exports
 * the policy topic, so a worker there needs no flag to answer hosts; in an open single account a
 * client choosing an `_R_.` reply gets its answer there, as it would in its own `_INBOX.`.
 */
const DEFAULT_INBOX_PREFIXES: readonly string[] = ["_INBOX.", "_R_."];

const Topic = z.string().refine(isPlainSubject, {
  error: (issue) =>
    `${JSON.stringify(issue.input)}: expected a NATS subject of dot-separated tokens, without spaces or wildcards (* >)`,
});

/** Configuration of a decision worker, parsed and defaulted before anything starts. */
export const WorkerConfig = z
  .object({
    /** Stable name of this worker in decisions and status (default: host name, pid and a random suffix). */
    id: z.string().min(1).optional(),
    policyTopic: Topic.default(DEFAULT_POLICY_TOPIC),
    changesTopic: Topic.default(DEFAULT_CHANGES_TOPIC),
    /**
     * Publish each override on its host's own subject, `<changesTopic>.<host key>` (hosts started
     * with `--policy-changes-topic` set to it), instead of the shared changes topic that every host
     * hears; an override whose host key is not a valid subject token goes on the shared topic.
     * Every worker of a deployment must agree.
     */
    changesPerHost: z.boolean().default(false),
    queueGroup: z.string().min(1).default(DEFAULT_QUEUE_GROUP),
    prefix: z
      .string()
      .regex(/^[A-Za-z0-9_-]+$/, "use letters, digits, - and _")
      .default(DEFAULT_PREFIX),
    /** Replicas used when the worker has to create a stream or bucket. */
    replicas: z.number().int().min(1).max(5).default(1),
    /** Public keys (`O…`) whose signed rule events this worker accepts. */
    adminKeys: z.array(z.string()).default([]),
    /** This worker's signing seed (`SN…`); one is generated when absent. */
    workerSeed: z.string().optional(),
    /**
     * The deployment this worker belongs to; when set, a rules stream or snapshot of another
     * deployment is refused (a fresh worker cannot be pointed at a foreign stream). Otherwise
     * the worker takes the deployment of the genesis event it reads.
     */
    deployment: DeploymentId.optional(),
    /** Worker public keys (`N…`) enrolled by configuration, besides those enrolled in the rules stream. */
    workerKeys: z.array(WorkerPublicKey).default([]),
    /**
     * Serve even though this worker's key is not enrolled (its decisions will not verify); logged
     * loudly and reported as degraded. For trying things out, not for production.
     */
    allowUnenrolled: z.boolean().default(false),
    /** How often the worker checks that the rules stream still holds the event it folded last. */
    chainCheckMs: z.number().int().positive().default(5000),
    /** Largest request accepted, in bytes. */
    maxPayloadBytes: z
      .number()
      .int()
      // A wasmCloud request with claims and a few labels is about 1 KB: less than this would
      // refuse every real request, which is a mistyped setting rather than a policy.
      .min(
        MIN_PAYLOAD_BYTES,
        `at least ${MIN_PAYLOAD_BYTES} bytes: a smaller limit refuses real wasmCloud requests`,
      )
      .default(1024 * 1024),
    /** How long to wait for JetStream to acknowledge a decision before giving up on it. */
    ackTimeoutMs: z.number().int().positive().default(2000),
    /** How long `start()` waits to catch up with the rule events before serving anyway (degraded). */
    catchUpTimeoutMs: z.number().int().positive().default(30_000),
    /**
     * Requests held (waiting to be decided, or decided and waiting for their record) beyond which new
     * ones are dropped unanswered: the host times out and fails closed, as when no worker answers,
     * and the worker's memory stays bounded even while the decision log is slow or silent.
     */
    maxQueuedRequests: z.number().int().positive().default(10_000),
    /**
     * Bytes of requests waiting to be decided, and of the records of those decided and waiting for
     * the log's acknowledgement, beyond which new ones are dropped unanswered too (one larger
     * request is still taken when none waits): 10,000 requests of a megabyte each, within the
     * count, were 10 GB.
     */
    maxQueuedBytes: z
      .number()
      .int()
      .positive()
      .default(256 * 1024 * 1024),
    /**
     * Reply subject prefixes the worker answers to (hosts' inboxes). A request with any other reply
     * subject is recorded, counted and not answered, so no answer can be steered onto the changes
     * topic or into Arbiter's own streams.
     */
    inboxPrefixes: z
      .array(z.string().regex(/^[^\s*>]+$/, "a subject prefix without spaces or wildcards"))
      .min(1)
      .default([...DEFAULT_INBOX_PREFIXES]),
    /**
     * How long a reply subject that was answered stays refused: each inbox gets one answer, so that
     * a host cannot steer a stream of answers into an inbox it predicts another host will use
     * (see AnsweredReplies). Longer than any host waits for an answer.
     */
    replyOnceWindowMs: z.number().int().positive().default(10_000),
    /**
     * What to do when the decision log does not acknowledge: `silent` (default) leaves the request
     * unanswered, so the host fails closed without caching; `deny` answers `permitted: false`, which
     * hosts cache for their lifetime.
     */
    onLogOutage: z.enum(["silent", "deny"]).default("silent"),
    /**
     * Take part in the revocation fan-out (default true): project the decision log into the
     * active index and re-evaluate each rules revision against it, publishing overrides. Needs the
     * JetStream store (a worker given another store does not).
     */
    revoke: z.boolean().default(true),
    /**
     * The wasmCloud lattices whose hosts this worker serves: it follows their lifecycle events
     * (`wasmbus.evt.{lattice}.host_*`) and prunes the active index of hosts that stopped.
     */
    lattices: z
      .array(
        z.string().refine((name) => /^[A-Za-z0-9][A-Za-z0-9_-]*$/.test(name), {
          error: (issue) =>
            `${JSON.stringify(issue.input)}: expected a lattice name, one subject token of letters, digits, - and _`,
        }),
      )
      .min(1)
      .default(["default"]),
    /**
     * How long a host whose heartbeat was seen may go unheard before it is pinged and, silent,
     * pruned: two of wasmCloud's 30 s heartbeat intervals and some slack, as wadm does.
     */
    hostTimeoutMs: z.number().int().positive().default(70_000),
    /** How long a ping waits for a host's answer before a stop or a silence prunes it. */
    hostPingWaitMs: z.number().int().positive().default(1000),
    /**
     * Entries per part of a split re-evaluation: an active index larger than this is cut into
     * parts that every worker takes; one no larger is scanned by the worker that took the revision.
     */
    scanPartSize: z.number().int().positive().default(DEFAULT_SCAN_PART_SIZE),
    /**
     * Keys of the active index this worker's mirror holds at most (about 3 KB an entry once a scan
     * parsed it); an index larger than this is read from the server at each re-evaluation. 0: no mirror.
     */
    indexMirrorMaxKeys: z.number().int().nonnegative().default(DEFAULT_MIRROR_MAX_KEYS),
    /**
     * Bytes of the active index's stream this worker's mirror holds at most (entries are as large as
     * hosts make their requests); a larger index is read from the server at each re-evaluation.
     */
    indexMirrorMaxBytes: z.number().int().positive().default(DEFAULT_MIRROR_MAX_BYTES),
    /** First pause before following the rules again after the feed broke; doubles up to 5 s. */
    followRetryMs: z.number().int().positive().default(250),
    /**
     * Signed policy requests (a wascap invocation token in the `Wasmcloud-Invocation` header):
     * `off` (default) reads no header; `verify-if-present` checks a token when there is one and
     * denies a request whose token fails; `required` also denies every unsigned request.
     */
    requestSignatures: z.enum(["off", "verify-if-present", "required"]).default("off"),
    /** Cluster keys (`C…`, `WASMCLOUD_CLUSTER_ISSUERS`) whose signed requests are believed. */
    clusterIssuers: z.array(z.string()).default([]),
    /** Oldest signed request accepted, by its token's `iat`; its token id is refused again for as long. */
    maxTokenAgeMs: z.number().int().positive().default(60_000),
    /** How far in the future a token's `iat` may be (clocks differ) before the token is refused. */
    maxClockSkewMs: z.number().int().nonnegative().default(5_000),
  })
  .superRefine((config, ctx) => {
    if (config.requestSignatures === "required" && config.clusterIssuers.length === 0) {
      ctx.addIssue({
        code: "custom",
        path: ["clusterIssuers"],
        message:
          "requestSignatures is required but no cluster issuers are configured: no request could be verified, so every one would be denied",
      });
    }
    if (config.policyTopic === config.changesTopic) {
      ctx.addIssue({
        code: "custom",
        path: ["changesTopic"],
        message: `${JSON.stringify(config.changesTopic)}: the same subject as policyTopic; hosts would take overrides for requests`,
      });
    }
  });
/** A worker configuration as given (defaults not yet applied). */
export type WorkerConfig = z.input<typeof WorkerConfig>;
/** A worker configuration with its defaults applied. */
export type ParsedWorkerConfig = z.output<typeof WorkerConfig>;

/**
 * Validates a worker configuration and fills in its defaults; throws `ArbiterError`
 * (INVALID_CONFIG) naming each problem by its setting (`adminKeys`, `workerSeed`, `inboxPrefixes`, …).
 */
export function parseWorkerConfig(config: WorkerConfig): ParsedWorkerConfig {
  const parsed = WorkerConfig.safeParse(config);
  if (!parsed.success) {
    const problems = parsed.error.issues
      .map((i) => `${i.path.join(".") || "config"}: ${i.message}`)
      .join("; ");
    throw new ArbiterError(ErrorCode.InvalidConfig, `invalid worker configuration: ${problems}`);
  }
  const out = parsed.data;
  for (const key of out.adminKeys) {
    try {
      decodePublicKey(key, "O");
    } catch (err) {
      throw new ArbiterError(
        ErrorCode.InvalidConfig,
        `adminKeys: invalid admin key ${JSON.stringify(key)}: ${(err as Error).message}`,
      );
    }
  }
  for (const key of out.clusterIssuers) {
    try {
      decodePublicKey(key, "C");
    } catch (err) {
      throw new ArbiterError(
        ErrorCode.InvalidConfig,
        `clusterIssuers: invalid cluster key ${JSON.stringify(key)}: ${(err as Error).message}`,
      );
    }
  }
  for (const inbox of out.inboxPrefixes) {
    const owned = ownSubjects(out).find((own) => overlaps(inbox, own));
    if (owned !== undefined) {
      throw new ArbiterError(
        ErrorCode.InvalidConfig,
        `inboxPrefixes: ${JSON.stringify(inbox)} would let answers reach ${JSON.stringify(owned)}, a subject of Arbiter or wasmCloud's policy topics`,
      );
    }
  }
  return out;
}

/**
 * True when the worker may answer on `reply`: it starts with one of `inboxPrefixes`, something
 * follows the prefix, and it is one literal subject. A reply with a wildcard token (`_INBOX.>`,
 * `_INBOX.abc.*`) would reach every subscription the wildcard matches (other hosts' and Arbiter's
 * own inboxes among them) instead of one inbox; an empty token or a space makes no subject at all.
 */
export function isInboxReply(reply: string, inboxPrefixes: readonly string[]): boolean {
  for (const prefix of inboxPrefixes) {
    if (reply.length > prefix.length && reply.startsWith(prefix)) return isLiteralSubject(reply);
  }
  return false;
}

const DOT = 0x2e;
const STAR = 0x2a;
const GREATER = 0x3e;
const DEL = 0x7f;

/** True when `subject` has no empty token, no `*` or `>` token, and no space or control character. */
function isLiteralSubject(subject: string): boolean {
  let tokenStart = 0;
  for (let i = 0; i <= subject.length; i++) {
    const c = i === subject.length ? DOT : subject.charCodeAt(i);
    if (c === DOT) {
      const length = i - tokenStart;
      if (length === 0) return false;
      if (length === 1) {
        const only = subject.charCodeAt(tokenStart);
        if (only === STAR || only === GREATER) return false;
      }
      tokenStart = i + 1;
    } else if (c <= 0x20 || c === DEL) {
      return false;
    }
  }
  return true;
}

/** True when `subject` is one literal subject with no `*`, `>` or white space anywhere, even inside a token. */
function isPlainSubject(subject: string): boolean {
  return isLiteralSubject(subject) && !/[\s*>]/.test(subject);
}

/** Subjects (each with everything under it) no answer may ever be sent to. */
function ownSubjects(config: ParsedWorkerConfig): string[] {
  return [config.changesTopic, config.policyTopic, config.prefix];
}

/** True when some subject starting with `inbox` is `subject` or under it. */
function overlaps(inbox: string, subject: string): boolean {
  return subject.startsWith(inbox) || inbox === subject || inbox.startsWith(`${subject}.`);
}
