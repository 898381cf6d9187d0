import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import {
  ADMIN_INBOX_PREFIX,
  ArbiterError,
  decodePolicyRequest,
  ErrorCode,
  type LifecycleState,
  type NormalizedRequest,
  resourceNames,
  type UnsignedDecisionV1,
  type WorkerStatusV1,
} from "@arbiter/protocol";
import { isEnrolled, type RulesetState, type RulesetTrust } from "@arbiter/rules";
import {
  type ArbiterStore,
  maxDecisionRecordBytes,
  openIndexMirror,
  openJetStreamActiveIndex,
  openJetStreamReplayGuard,
  openJetStreamRevocationLog,
  openJetStreamScanParts,
  openJetStreamStore,
  type ReplayGuard,
} from "@arbiter/store";
import { createSigner, generateKey, type Signer } from "@arbiter/trust";
import type { Msg, NatsConnection, Subscription } from "@nats-io/nats-core";
import { type Logger, pino } from "pino";
import { monotonicFactory } from "ulid";
import { AnsweredReplies } from "./answered-replies.js";
import { ChangesSubjects } from "./changes-subjects.js";
import { isInboxReply, type ParsedWorkerConfig, parseWorkerConfig, type WorkerConfig } from "./config.js";
import {
  type DecidingWorker,
  type DecisionContext,
  decideRequest,
  decisionRecord,
  encodeDecisionRecord,
  rejectionRecord,
  trustRefusal,
} from "./decide.js";
import { type Decided, DecisionRecorder } from "./decision-recorder.js";
import { HostLifecycle } from "./host-lifecycle.js";
import { RateLimitedWarning } from "./rate-limited-warning.js";
import { RequestQueue } from "./request-queue.js";
import {
  invocationTokens,
  RequestTrustReason,
  RequestVerifier,
  type TrustResult,
  trustDenial,
} from "./request-signatures.js";
import { prepareForReevaluation, Revoker, revokerCounters } from "./revoker.js";
import { RulesFollower } from "./rules-follower.js";

/** Lifecycle states shared by Arbiter's long-running parts. */
export type WorkerStatus = LifecycleState;

/** A worker's state and, whenever it is not ready, why. */
export interface WorkerHealth {
  readonly state: LifecycleState;
  /** Why the worker is degraded (or not yet ready); null when ready. */
  readonly reason: string | null;
}

/** Counters a worker keeps since it started. */
export interface WorkerStats {
  readonly decisions: number;
  readonly permitted: number;
  readonly denied: number;
  /** Requests refused at the edge (bad input), answered with `permitted: false`. */
  readonly rejected: number;
  /** Requests that could not be answered because they carry no reply subject. */
  readonly unanswerable: number;
  /** Requests recorded but not answered because their reply subject is not an inbox, or was answered already. */
  readonly refusedReply: number;
  /** Requests denied because their signature was required and missing, or present and not valid. */
  readonly untrusted: number;
  /** Signed requests left unanswered because the replay bucket did not answer (`onLogOutage: "silent"`). */
  readonly unansweredReplayUnchecked: number;
  /** Signed requests recorded but not answered because their token id was used before. */
  readonly replayed: number;
  /** Requests dropped unanswered because `maxQueuedRequests` were already waiting or being recorded. */
  readonly shed: number;
  /** Decisions the decision log did not acknowledge. */
  readonly logFailures: number;
  /** Requests left unanswered because the decision log did not acknowledge (`onLogOutage: "silent"`). */
  readonly unansweredOutage: number;
  readonly ruleEventsApplied: number;
  readonly ruleEventsRejected: number;
  /** Rules snapshots refused at start: of another deployment, or naming a head the stream does not have. */
  readonly snapshotsRefused: number;
  /** Times the rules history stopped chaining (another deployment, a wrong prev, a refilled stream). */
  readonly chainBreaks: number;
  /** Times the worker followed the rule events again after the feed broke. */
  readonly ruleFeedRestarts: number;
  readonly inFlight: number;
}

/** A running decision worker. */
export interface Worker {
  readonly id: string;
  readonly publicKey: string;
  /** The lifecycle state (`health.state`). */
  readonly status: WorkerStatus;
  /** The state and why it is not ready. */
  readonly health: WorkerHealth;
  /** The rules revision decisions are made at now. */
  readonly revision: number;
  stats(): WorkerStats;
  /** What the worker answers on the status subject. */
  statusRecord(): WorkerStatusV1;
  /** Resolves once the worker has consumed rule events up to `revision`, or its rules history stopped chaining (see `health`). */
  waitForRevision(revision: number, timeoutMs?: number): Promise<void>;
  /**
   * Opens the store, catches up with the rules and joins the queue group. On failure it leaves
   * nothing open (no subscription, no follower, its own store closed) and rethrows.
   */
  start(): Promise<void>;
  /** Stops taking requests, answers every request already accepted, then stops following rules. */
  stop(): Promise<void>;
}

/** Dependencies of {@link createWorker}; the NATS connections belong to the caller. */
export interface WorkerDeps {
  /**
   * The connection requests arrive on and answers leave by, and the lattices' host events and
   * pings: everything hosts send, which enough of them can make the server cut off.
   */
  readonly nc: NatsConnection;
  /**
   * The connection for JetStream (rules, snapshot, decision log), by default `nc`. One of its own
   * keeps the decision log's large messages and their acknowledgements out of the way of
   * requests and answers, in the client and in the server.
   */
  readonly storeNc?: NatsConnection;
  readonly config?: WorkerConfig;
  readonly logger?: Logger;
  /** The store to use; by default the JetStream store on `storeNc`. */
  readonly store?: ArbiterStore;
  /**
   * Where signed requests' token ids are claimed (when `requestSignatures` is not `off`); by
   * default the replay bucket on `storeNc`, shared by every worker.
   */
  readonly replayGuard?: ReplayGuard;
  readonly clock?: () => Date;
}

/**
 * Creates a decision worker: it joins the queue group on the policy topic, decides each request
 * under the current rules, records the decision in JetStream and only then replies, to inbox
 * reply subjects only. Throws `ArbiterError` (INVALID_CONFIG) for a bad configuration, naming
 * the setting (`workerSeed` for a seed that is not a host seed).
 */
export function createWorker(deps: WorkerDeps): Worker {
  return new DecisionWorker(deps, parseWorkerConfig(deps.config ?? {}));
}

/** The counters the worker keeps itself, beside those of its parts. */
type WorkerCounts = {
  -readonly [K in
    | "rejected"
    | "unanswerable"
    | "refusedReply"
    | "untrusted"
    | "unansweredReplayUnchecked"
    | "replayed"]: number;
};

/** The parts that live between `start()` and `stop()`. */
interface Running {
  readonly store: ArbiterStore;
  readonly ownsStore: boolean;
  readonly follower: RulesFollower;
  readonly recorder: DecisionRecorder;
  readonly queue: RequestQueue;
  /** Null when `requestSignatures` is `off`: no header is read. */
  readonly verifier: RequestVerifier | null;
  /** Signed requests waiting for their replay check. */
  readonly verifying: Set<Promise<void>>;
  subscription?: Subscription;
  statusSubscription?: Subscription;
  /** The revocation fan-out, when this worker takes part (`revoke`, JetStream store). */
  revoker?: Revoker;
  /** Pruning of stopped hosts from the active index, beside the fan-out. */
  lifecycle?: HostLifecycle;
}

class DecisionWorker implements Worker {
  readonly id: string;
  readonly publicKey: string;
  readonly #nc: NatsConnection;
  readonly #storeNc: NatsConnection;
  readonly #config: ParsedWorkerConfig;
  /** Hosts' inboxes, and the admins' own, which the CLI asks from (the shipped permissions reserve it). */
  readonly #statusReplyPrefixes: readonly string[];
  readonly #log: Logger;
  readonly #signer: Signer;
  readonly #givenStore: ArbiterStore | undefined;
  readonly #givenReplayGuard: ReplayGuard | undefined;
  readonly #identity: DecidingWorker;
  readonly #trust: RulesetTrust;
  readonly #generatedKey: boolean;
  readonly #clock: () => Date;
  readonly #nextId = monotonicFactory(pooledRandom());
  readonly #refusedWarning: RateLimitedWarning;
  readonly #answeredReplies: AnsweredReplies;
  readonly #rejectedWarning: RateLimitedWarning;
  readonly #unanswerableWarning: RateLimitedWarning;
  readonly #untrustedWarning: RateLimitedWarning;
  readonly #replayedWarning: RateLimitedWarning;
  readonly #uncheckedWarning: RateLimitedWarning;
  #flushScheduled = false;
  #running: Running | undefined;
  #state: LifecycleState = "stopped";
  #subscriptionProblem: string | null = null;
  /** True while this worker's key is not enrolled: it has left the policy topic and drops what was queued. */
  #suspended = false;
  #stopping = false;
  #lastHealth: WorkerHealth = { state: "stopped", reason: null };
  #counts: WorkerCounts = {
    rejected: 0,
    unanswerable: 0,
    refusedReply: 0,
    untrusted: 0,
    unansweredReplayUnchecked: 0,
    replayed: 0,
  };
  /** The subject of each override this worker's fan-out publishes. */
  readonly #changes: ChangesSubjects;
  /** Counters of the parts of the last run, kept after `stop()`. */
  #finished: Omit<WorkerStats, keyof WorkerCounts> | undefined;

  constructor(deps: WorkerDeps, config: ParsedWorkerConfig) {
    this.#nc = deps.nc;
    this.#storeNc = deps.storeNc ?? deps.nc;
    this.#config = config;
    this.#statusReplyPrefixes = [...config.inboxPrefixes, `${ADMIN_INBOX_PREFIX}.`];
    this.#givenStore = deps.store;
    this.#givenReplayGuard = deps.replayGuard;
    this.#clock = deps.clock ?? (() => new Date());
    try {
      this.#signer = createSigner(config.workerSeed ?? generateKey("N").seed, "N");
    } catch (err) {
      throw new ArbiterError(
        ErrorCode.InvalidConfig,
        `workerSeed: not a worker seed (expected an nkeys host seed, SN…): ${(err as Error).message}`,
        { cause: err },
      );
    }
    this.id = config.id ?? `${hostname()}-${process.pid}-${randomBytes(3).toString("hex")}`;
    this.publicKey = this.#signer.publicKey;
    this.#identity = { id: this.id, publicKey: this.publicKey };
    this.#log = (deps.logger ?? pino({ name: "arbiter-worker" })).child({ worker: this.id });
    this.#generatedKey = config.workerSeed === undefined;
    this.#trust = {
      adminKeys: new Set(config.adminKeys),
      ...(config.deployment === undefined ? {} : { deployment: config.deployment }),
    };
    this.#refusedWarning = new RateLimitedWarning(
      this.#log,
      "policy requests whose reply subject is not an inbox or was answered already: recorded, not answered",
      "refused",
    );
    this.#answeredReplies = new AnsweredReplies(config.replyOnceWindowMs);
    this.#changes = new ChangesSubjects({
      changesTopic: config.changesTopic,
      perHost: config.changesPerHost,
      log: this.#log.child({ part: "revoker" }),
    });
    // Bad input and requests without a reply come at whatever rate a host publishes them: one
    // line per request would let any host flood the log, so each kind is one line a second
    // with its count and one example.
    this.#rejectedWarning = new RateLimitedWarning(
      this.#log,
      "rejected policy requests: answered permitted: false and recorded",
      "rejected",
    );
    this.#unanswerableWarning = new RateLimitedWarning(
      this.#log,
      "policy requests without a reply subject: not answered",
      "unanswerable",
    );
    this.#untrustedWarning = new RateLimitedWarning(
      this.#log,
      "policy requests denied for their signature (missing where required, or not valid): recorded",
      "denied",
    );
    this.#replayedWarning = new RateLimitedWarning(
      this.#log,
      "signed policy requests whose token was used before: recorded, not answered",
      "replayed",
    );
    this.#uncheckedWarning = new RateLimitedWarning(
      this.#log,
      "the replay bucket does not answer: signed policy requests left unanswered (hosts fail closed and ask again)",
      "requests",
    );
  }

  get status(): WorkerStatus {
    return this.health.state;
  }

  get health(): WorkerHealth {
    const running = this.#running;
    if (this.#state !== "ready" || running === undefined) {
      return { state: this.#state, reason: this.#state === "starting" ? "starting" : null };
    }
    const reasons = [
      this.#subscriptionProblem,
      running.follower.problem,
      running.recorder.problem,
      this.#enrollmentProblem(running.follower.ruleset),
    ].filter((r): r is string => r !== null);
    return reasons.length === 0
      ? { state: "ready", reason: null }
      : { state: "degraded", reason: reasons.join("; ") };
  }

  get revision(): number {
    return this.#running?.follower.ruleset.revision ?? 0;
  }

  stats(): WorkerStats {
    const running = this.#running;
    const parts = running
      ? {
          ...running.recorder.stats,
          shed: running.queue.shed,
          ruleEventsApplied: running.follower.applied,
          ruleEventsRejected: running.follower.rejected,
          snapshotsRefused: running.follower.snapshotsRefused,
          chainBreaks: running.follower.chainBreaks,
          ruleFeedRestarts: running.follower.restarts,
          inFlight: running.recorder.inFlight,
        }
      : (this.#finished ?? {
          decisions: 0,
          permitted: 0,
          denied: 0,
          logFailures: 0,
          unansweredOutage: 0,
          shed: 0,
          ruleEventsApplied: 0,
          ruleEventsRejected: 0,
          snapshotsRefused: 0,
          chainBreaks: 0,
          ruleFeedRestarts: 0,
          inFlight: 0,
        });
    return { ...parts, ...this.#counts };
  }

  statusRecord(): WorkerStatusV1 {
    const { state, reason } = this.health;
    const { inFlight: _, ...stats } = this.stats();
    return {
      id: this.id,
      publicKey: this.publicKey,
      state,
      reason,
      revision: this.revision,
      adminKeys: [...this.#trust.adminKeys],
      deployment: this.#running?.follower.ruleset.deployment ?? null,
      enrolled: this.#running ? this.#isEnrolled(this.#running.follower.ruleset) : false,
      broken: this.#running?.follower.ruleset.broken ?? null,
      changesPerHost: this.#changes.perHost,
      changesTopic: this.#config.changesTopic,
      stats: {
        ...stats,
        ...revokerCounters(this.#running?.revoker?.stats),
        ...(this.#changes.perHost ? { changesSharedFallback: this.#changes.sharedFallback } : {}),
      },
    };
  }

  waitForRevision(revision: number, timeoutMs = 30_000): Promise<void> {
    const running = this.#running;
    if (running === undefined) {
      return Promise.reject(new ArbiterError(ErrorCode.Internal, `worker ${this.id} is not running`));
    }
    return running.follower.waitForRevision(revision, timeoutMs);
  }

  async start(): Promise<void> {
    if (this.#state !== "stopped")
      throw new ArbiterError(ErrorCode.Internal, `worker ${this.id} is already ${this.#state}`);
    this.#state = "starting";
    if (this.#trust.adminKeys.size === 0) {
      this.#log.warn("no admin keys configured: every rule event will be rejected and every request denied");
    }
    let store: ArbiterStore | undefined;
    let follower: RulesFollower | undefined;
    try {
      store =
        this.#givenStore ??
        (await openJetStreamStore(this.#storeNc, {
          createReplayBucket: false,
          createFanOut: false,
          prefix: this.#config.prefix,
          replicas: this.#config.replicas,
          ackTimeoutMs: this.#config.ackTimeoutMs,
        }));
      const onChange = () => this.#reportHealth();
      follower = new RulesFollower({
        store,
        trust: this.#trust,
        log: this.#log,
        retryMs: this.#config.followRetryMs,
        chainCheckMs: this.#config.chainCheckMs,
        onChange,
      });
      await follower.start(this.#config.catchUpTimeoutMs);
      this.#checkBelongs(follower.ruleset);
      const verifier = await this.#requestVerifier();
      const recorder = new DecisionRecorder({
        log: store.decisions,
        signer: this.#signer,
        logger: this.#log,
        maxPayload: () => this.#storeNc.info?.max_payload,
        onLogOutage: this.#config.onLogOutage,
        onChange,
      });
      const verifying = new Set<Promise<void>>();
      const queue = new RequestQueue({
        limit: this.#config.maxQueuedRequests,
        limitBytes: this.#config.maxQueuedBytes,
        held: () => recorder.held + verifying.size,
        heldBytes: () => recorder.heldBytes,
        log: this.#log,
        onSlice: (slice, more) => {
          for (const msg of slice) {
            const decided = this.#decide(msg, recorder);
            if (decided instanceof Promise) this.#later(decided, recorder, verifying);
            else if (decided !== null) recorder.add(decided);
          }
          recorder.flush(more);
        },
      });
      const running: Running = {
        store,
        ownsStore: this.#givenStore === undefined,
        follower,
        recorder,
        queue,
        verifier,
        verifying,
      };
      this.#running = running;
      this.#subscribePolicy(running);
      running.statusSubscription = this.#nc.subscribe(resourceNames(this.#config.prefix).statusSubject, {
        callback: (err, msg) => {
          if (err) {
            this.#log.warn({ err }, "the status subscription failed; status requests go unanswered");
            return;
          }
          if (!msg.reply || !isInboxReply(msg.reply, this.#statusReplyPrefixes)) return;
          try {
            msg.respond(Buffer.from(JSON.stringify(this.statusRecord())));
          } catch (failure) {
            this.#log.warn({ err: failure }, "could not answer a status request");
          }
        },
      });
      await this.#nc.flush();
      running.revoker = await this.#revoker(store, follower);
      running.lifecycle = this.#hostLifecycle(running.revoker);
      this.#state = "ready";
    } catch (err) {
      const running = this.#running;
      this.#running = undefined;
      running?.subscription?.unsubscribe();
      running?.statusSubscription?.unsubscribe();
      await running?.lifecycle?.stop().catch(() => {});
      await running?.revoker?.stop().catch(() => {});
      await follower?.stop().catch(() => {});
      if (this.#givenStore === undefined) await store?.close().catch(() => {});
      this.#state = "stopped";
      throw err;
    }
    this.#reportHealth();
    this.#log.info(
      {
        topic: this.#config.policyTopic,
        queue: this.#config.queueGroup,
        revision: this.revision,
        publicKey: this.publicKey,
      },
      "worker ready",
    );
  }

  async stop(): Promise<void> {
    const running = this.#running;
    if (this.#state === "stopped" || running === undefined) return;
    this.#stopping = true;
    const { subscription, statusSubscription } = running;
    running.subscription = undefined;
    statusSubscription?.unsubscribe();
    if (subscription && !subscription.isClosed()) await subscription.drain().catch(() => {});
    while (running.queue.length > 0 || running.recorder.inFlight > 0 || running.verifying.size > 0) {
      if (running.queue.length > 0) await new Promise((resolve) => setImmediate(resolve));
      if (running.verifying.size > 0) await Promise.allSettled([...running.verifying]);
      await running.recorder.settled();
    }
    await running.lifecycle?.stop();
    await running.revoker?.stop();
    await running.follower.stop();
    if (running.verifier !== null && this.#givenReplayGuard === undefined) running.verifier.close();
    running.queue.flushWarnings();
    running.recorder.flushWarnings();
    this.#refusedWarning.flush();
    this.#rejectedWarning.flush();
    this.#unanswerableWarning.flush();
    this.#untrustedWarning.flush();
    this.#replayedWarning.flush();
    this.#uncheckedWarning.flush();
    this.#changes.flush();
    if (running.ownsStore) await running.store.close();
    this.#finished = {
      ...running.recorder.stats,
      shed: running.queue.shed,
      ruleEventsApplied: running.follower.applied,
      ruleEventsRejected: running.follower.rejected,
      snapshotsRefused: running.follower.snapshotsRefused,
      chainBreaks: running.follower.chainBreaks,
      ruleFeedRestarts: running.follower.restarts,
      inFlight: 0,
    };
    this.#running = undefined;
    this.#state = "stopped";
    this.#stopping = false;
    this.#suspended = false;
    this.#log.info({ stats: this.stats() }, "worker stopped");
  }

  /** True when this worker's key is enrolled now, in the rules or by configuration. */
  #isEnrolled(ruleset: RulesetState): boolean {
    return this.#config.workerKeys.includes(this.publicKey) || isEnrolled(ruleset.workers, this.publicKey);
  }

  /** Why serving with this key is not as it should be (not enrolled, or removed), or null. */
  #enrollmentProblem(ruleset: RulesetState): string | null {
    if (this.#isEnrolled(ruleset)) return null;
    const removed = ruleset.workers.findLast((w) => w.publicKey === this.publicKey);
    if (removed !== undefined && removed.to !== null) {
      return this.#config.allowUnenrolled
        ? `this worker's key ${this.publicKey} was removed at revision ${removed.to}: its decisions no longer verify`
        : `this worker's key ${this.publicKey} was removed at revision ${removed.to}: not answering policy requests until it is enrolled again`;
    }
    return `serving with the unenrolled key ${this.publicKey} (allowUnenrolled): its decisions do not verify`;
  }

  /**
   * Refuses to start in a deployment this worker does not belong to (pinned to another one) or
   * with a key that is not enrolled there, unless `allowUnenrolled` says otherwise.
   */
  #checkBelongs(ruleset: RulesetState): void {
    const pinned = this.#config.deployment;
    if (pinned !== undefined && ruleset.broken !== null && ruleset.deployment === null) {
      throw new ArbiterError(
        ErrorCode.InvalidConfig,
        `deployment: this worker is pinned to deployment ${pinned}, and the rules stream does not chain to it: ${ruleset.broken.reason}`,
      );
    }
    if (this.#isEnrolled(ruleset)) return;
    const where =
      ruleset.deployment === null
        ? "the deployment (the rules stream has no genesis event yet)"
        : `deployment ${ruleset.deployment}`;
    if (this.#config.allowUnenrolled) {
      this.#log.warn(
        { publicKey: this.publicKey, deployment: ruleset.deployment },
        `SERVING WITH AN UNENROLLED KEY (allowUnenrolled): ${this.publicKey} is not enrolled in ${where}, so no decision this worker signs will verify`,
      );
      return;
    }
    if (ruleset.deployment === null && ruleset.revision > 0) {
      // Every event was rejected, the genesis and the enrollments too: the admin keys are wrong, not the enrollment.
      const keys = this.#config.adminKeys;
      throw new ArbiterError(
        ErrorCode.InvalidConfig,
        `this worker applied none of the ${ruleset.revision} rule events in the stream, so it cannot see whether its key ${this.publicKey} is enrolled: ${keys.length === 0 ? "no admin keys are configured" : `they are not signed by its admin keys (${keys.join(", ")})`}; set ARBITER_ADMIN_KEYS (--admin-keys) to the public key (O…) that signs this deployment's rules`,
      );
    }
    // A key made for this run dies with it: enrolling it would not let the next start serve.
    const message = this.#generatedKey
      ? `this worker has no key of its own (ARBITER_WORKER_SEED), and the one made for this run (${this.publicKey}) is not enrolled in ${where}: make a key with \`arbiter trust keygen worker\`, enroll its public key with \`arbiter workers enroll N…\` (or list it in ARBITER_WORKER_KEYS) and start the worker with ARBITER_WORKER_SEED set to its seed, or start the worker with --allow-unenrolled`
      : `this worker's key ${this.publicKey} is not enrolled in ${where}: enroll it with \`arbiter workers enroll ${this.publicKey}\` (or list it in ARBITER_WORKER_KEYS), or start the worker with --allow-unenrolled`;
    throw new ArbiterError(ErrorCode.WorkerNotEnrolled, message);
  }

  /** Takes this worker's share of the policy topic (its queue group). */
  #subscribePolicy(running: Running): void {
    running.subscription = this.#nc.subscribe(this.#config.policyTopic, {
      queue: this.#config.queueGroup,
      callback: (err, msg) => {
        if (err) {
          this.#log.error({ err }, "policy subscription failed");
          this.#subscriptionProblem = `the policy subscription failed: ${err.message}`;
          this.#reportHealth();
          return;
        }
        running.queue.push(msg);
      },
    });
  }

  /**
   * Leaves the policy topic and the revocation fan-out while this worker's key is not enrolled
   * (removed while it runs), so other enrolled workers answer and re-evaluate, or none and hosts
   * fail closed without caching; takes both again once the key is enrolled again. With
   * `allowUnenrolled` it keeps answering, as told.
   */
  #followEnrollment(): void {
    const running = this.#running;
    if (running === undefined || this.#state !== "ready" || this.#stopping || this.#config.allowUnenrolled) {
      return;
    }
    const enrolled = this.#isEnrolled(running.follower.ruleset);
    if (!enrolled && !this.#suspended) {
      this.#suspended = true;
      running.subscription?.unsubscribe();
      running.subscription = undefined;
      void running.revoker?.suspend();
      this.#log.error(
        { publicKey: this.publicKey, revision: running.follower.ruleset.revision },
        `this worker's key ${this.publicKey} is no longer enrolled: stopped answering policy requests until it is enrolled again`,
      );
    } else if (enrolled && this.#suspended) {
      this.#suspended = false;
      this.#subscribePolicy(running);
      void running.revoker?.resume();
      this.#log.info(
        { publicKey: this.publicKey, revision: running.follower.ruleset.revision },
        `this worker's key ${this.publicKey} is enrolled again: answering policy requests again`,
      );
    }
  }

  /** Leaves or takes the policy topic as the key's enrollment says, and logs each change of health, once. */
  #reportHealth(): void {
    this.#followEnrollment();
    const health = this.health;
    const last = this.#lastHealth;
    if (health.state === last.state && health.reason === last.reason) return;
    this.#lastHealth = health;
    if (health.state === "degraded") this.#log.warn({ reason: health.reason }, "worker degraded");
    else if (health.state === "ready" && last.state === "degraded") this.#log.info("worker ready again");
  }

  /**
   * Decides one request, or answers it at once when that is all that can be done (no reply
   * subject: nothing; an internal failure: a denial). A request whose reply subject is not an
   * inbox, or is one answered already, is recorded as a rejection and not answered. Never throws.
   */
  #decide(msg: Msg, recorder: DecisionRecorder): Decided | null | Promise<Decided | null> {
    // Requests queued before the key was removed: the host fails closed on them, uncached.
    if (this.#suspended) return null;
    const started = process.hrtime.bigint();
    const ruleset = this.#running!.follower.ruleset;
    const now = this.#clock();
    const decoded = decodePolicyRequest(msg.data, { maxBytes: this.#config.maxPayloadBytes });
    const reply = msg.reply;
    if (!reply) {
      this.#counts.unanswerable++;
      this.#unanswerableWarning.count(1, {
        requestId: decoded.ok ? decoded.request.requestId : decoded.requestId,
      });
      return null;
    }
    const requestId = decoded.ok ? decoded.request.requestId : (decoded.requestId ?? "");
    const inbox = isInboxReply(reply, this.#config.inboxPrefixes);
    const answer = inbox && this.#answeredReplies.claim(reply);
    try {
      const context = {
        decisionId: this.#nextId(),
        revision: ruleset.revision,
        deployment: ruleset.deployment,
        now,
        worker: this.#identity,
        latencyMicros: 0,
      };
      let record: UnsignedDecisionV1;
      if (!answer) {
        this.#counts.refusedReply++;
        this.#refusedWarning.count(1, { requestId, reply: reply.slice(0, 256) });
        const subject = JSON.stringify(reply.slice(0, 256));
        const reason = inbox
          ? `the reply subject ${subject} was answered already (an inbox takes one answer); not answered`
          : `the reply subject ${subject} is not an inbox (${this.#config.inboxPrefixes.join(", ")}); not answered`;
        // Recorded with what was sent, so an operator can see who tried to steer an answer where.
        record = rejectionRecord(
          decoded.ok
            ? { ok: false, requestId, reason, input: decoded.request.input, kind: decoded.request.kind }
            : { ...decoded, requestId, reason },
          context,
        );
      } else if (decoded.ok) {
        const verifier = this.#running!.verifier;
        if (verifier === null) {
          record = decisionRecord(decoded.request, decideRequest(decoded.request, ruleset, now), context);
        } else {
          const request = decoded.request;
          const trust = verifier.check(request, msg.data, invocationTokens(msg), now);
          if (trust instanceof Promise) {
            return trust
              .then((checked) => {
                if (
                  checked.reasons.includes(RequestTrustReason.ReplayUnchecked) &&
                  this.#unchecked(checked)
                ) {
                  return null;
                }
                if (checked.reasons.includes(RequestTrustReason.Replayed)) {
                  return this.#sealed(
                    msg,
                    requestId,
                    this.#replayRecord(request, checked, context),
                    msg.data,
                    started,
                    context,
                    false,
                  );
                }
                return this.#sealed(
                  msg,
                  requestId,
                  this.#trustedRecord(request, checked, verifier.mode, ruleset, now, context),
                  msg.data,
                  started,
                  context,
                );
              })
              .catch((err: unknown) => {
                this.#failed(err, msg, requestId, recorder);
                return null;
              });
          }
          record = this.#trustedRecord(request, trust, verifier.mode, ruleset, now, context);
        }
      } else {
        this.#counts.rejected++;
        this.#rejectedWarning.count(1, { requestId, reason: decoded.reason });
        record = rejectionRecord({ ...decoded, requestId }, context);
      }
      if (!answer) {
        record.answered = false;
        return this.#sealed(msg, requestId, record, null, started, context, false);
      }
      return this.#sealed(msg, requestId, record, decoded.ok ? msg.data : null, started, context);
    } catch (err) {
      this.#failed(err, msg, answer ? requestId : null, recorder);
      return null;
    }
  }

  /**
   * Starts this worker's part of the revocation fan-out on the JetStream store, or returns
   * undefined when it takes no part (`revoke: false`, or a store given to it).
   */
  async #revoker(store: ArbiterStore, follower: RulesFollower): Promise<Revoker | undefined> {
    const config = this.#config;
    if (!config.revoke || this.#givenStore !== undefined) return undefined;
    const names = resourceNames(config.prefix);
    const revoker = new Revoker({
      nc: this.#storeNc,
      names,
      changes: this.#changes,
      openIndex: () => openJetStreamActiveIndex(this.#storeNc, { prefix: config.prefix, create: false }),
      ...(config.indexMirrorMaxKeys === 0
        ? {}
        : {
            openMirror: () =>
              openIndexMirror(this.#storeNc, {
                prefix: config.prefix,
                timeoutMs: config.ackTimeoutMs,
                maxKeys: config.indexMirrorMaxKeys,
                maxBytes: config.indexMirrorMaxBytes,
                prepare: prepareForReevaluation,
              }),
          }),
      revocations: openJetStreamRevocationLog(this.#storeNc, {
        prefix: config.prefix,
        ackTimeoutMs: config.ackTimeoutMs,
      }),
      decisions: store.decisions,
      rules: follower,
      rulesRevision: () => store.rules.lastRevision(),
      workerKeys: config.workerKeys,
      maySign: (ruleset) => config.allowUnenrolled || this.#isEnrolled(ruleset),
      signer: this.#signer,
      identity: this.#identity,
      nextId: () => this.#nextId(),
      clock: this.#clock,
      log: this.#log.child({ part: "revoker" }),
      openScanParts: () =>
        openJetStreamScanParts(this.#storeNc, { prefix: config.prefix, ackTimeoutMs: config.ackTimeoutMs }),
      scanPartSize: config.scanPartSize,
    });
    revoker.start();
    return revoker;
  }

  /** Follows the lattices' host lifecycle events when this worker takes part in the fan-out. */
  #hostLifecycle(revoker: Revoker | undefined): HostLifecycle | undefined {
    if (revoker === undefined) return undefined;
    const config = this.#config;
    const lifecycle = new HostLifecycle({
      // What hosts send comes in on the connection their requests do: every host connection may
      // answer each ping with a megabyte, and enough of them make the server cut the connection
      // they arrive on off as a slow consumer, which must not be the one of the log and the index.
      nc: this.#nc,
      lattices: config.lattices,
      queueGroup: config.queueGroup,
      openIndex: () => openJetStreamActiveIndex(this.#storeNc, { prefix: config.prefix, create: false }),
      hostTimeoutMs: config.hostTimeoutMs,
      pingWaitMs: config.hostPingWaitMs,
      clock: this.#clock,
      log: this.#log.child({ part: "host-lifecycle" }),
    });
    lifecycle.start();
    return lifecycle;
  }

  /** The worker's request verifier (opening the shared replay bucket), or null when signatures are off. */
  async #requestVerifier(): Promise<RequestVerifier | null> {
    const config = this.#config;
    if (config.requestSignatures === "off") return null;
    const guard =
      this.#givenReplayGuard ??
      (await openJetStreamReplayGuard(this.#storeNc, {
        prefix: config.prefix,
        replicas: config.replicas,
        windowMs: config.maxTokenAgeMs + config.maxClockSkewMs,
        ackTimeoutMs: config.ackTimeoutMs,
      }));
    this.#log.info(
      { mode: config.requestSignatures, issuers: config.clusterIssuers, maxTokenAgeMs: config.maxTokenAgeMs },
      "checking signed policy requests",
    );
    return new RequestVerifier({
      mode: config.requestSignatures,
      issuers: config.clusterIssuers,
      policyTopic: config.policyTopic,
      maxTokenAgeMs: config.maxTokenAgeMs,
      maxClockSkewMs: config.maxClockSkewMs,
      guard,
    });
  }

  /**
   * The record of a request whose signature was checked: a denial naming what failed when the
   * signature was required and missing, or present and not valid (the rules do not run); else
   * the rules' decision, with `trust` for them to see.
   */
  #trustedRecord(
    request: NormalizedRequest,
    trust: TrustResult,
    mode: "verify-if-present" | "required",
    ruleset: RulesetState,
    now: Date,
    context: DecisionContext,
  ): UnsignedDecisionV1 {
    if (!trust.verified && (trust.signed || mode === "required")) {
      const message = trustDenial(trust, mode);
      this.#counts.untrusted++;
      this.#untrustedWarning.count(1, { requestId: request.requestId, reasons: trust.reasons });
      const record = decisionRecord(request, trustRefusal(message), context, trust);
      record.rejection = message;
      return record;
    }
    return decisionRecord(request, decideRequest(request, ruleset, now, trust), context, trust);
  }

  /**
   * The record of a request whose token was used before. It is not answered: whoever sent a copy
   * gets nothing, and a host whose own request arrived after a copy fails closed and asks again
   * rather than caching a denial it never earned.
   */
  #replayRecord(
    request: NormalizedRequest,
    trust: TrustResult,
    context: DecisionContext,
  ): UnsignedDecisionV1 {
    this.#counts.replayed++;
    this.#replayedWarning.count(1, { requestId: request.requestId, tokenId: trust.tokenId });
    const message = `the request's token was used before: ${trust.problems.map((p) => `${p.message} (${p.code})`).join("; ")}; not answered`;
    const record = decisionRecord(request, trustRefusal(message), context, trust);
    record.rejection = message;
    return record;
  }

  /** Hands a decision made after an asynchronous check to the recorder, batched with others of the same turn. */
  #later(decided: Promise<Decided | null>, recorder: DecisionRecorder, verifying: Set<Promise<void>>): void {
    const done = decided.then((d) => {
      verifying.delete(done);
      if (d === null) return;
      recorder.add(d);
      if (this.#flushScheduled) return;
      this.#flushScheduled = true;
      setImmediate(() => {
        this.#flushScheduled = false;
        recorder.flush(false);
      });
    });
    verifying.add(done);
  }

  /**
   * Whether a request whose token could not be checked against replays goes unanswered: with
   * `onLogOutage: "silent"` it does, as when the decision log fails (the replay bucket is in the
   * same JetStream), so the host fails closed without caching a denial; with `deny` it is denied.
   */
  #unchecked(trust: TrustResult): boolean {
    if (this.#config.onLogOutage !== "silent") return false;
    this.#counts.unansweredReplayUnchecked++;
    this.#uncheckedWarning.count(1, { reason: trust.problems.at(-1)?.message });
    return true;
  }

  /** Logs a defect in deciding and, when `requestId` is not null, answers a denial. */
  #failed(err: unknown, msg: Msg, requestId: string | null, recorder: DecisionRecorder): void {
    // Deciding never throws by contract; this guards against a defect, not input.
    this.#log.error({ err, requestId }, "decision failed");
    if (requestId !== null) {
      recorder.reply(msg, requestId, false, "Arbiter could not decide this request (internal error); denied");
    }
  }

  /**
   * Finishes a record: its latency, its bytes (the request's own bytes when given), and when the
   * record would not fit the decision log, the same record without the request body.
   */
  #sealed(
    msg: Msg,
    requestId: string,
    recordMade: UnsignedDecisionV1,
    requestBytes: Uint8Array | null,
    started: bigint,
    context: DecisionContext,
    answer = true,
  ): Decided {
    let record = recordMade;
    record.latencyMicros = Number((process.hrtime.bigint() - started) / 1000n);
    let body = encodeDecisionRecord(record, requestBytes);
    const limit = maxDecisionRecordBytes(this.#storeNc.info?.max_payload);
    if (
      body.length > limit ||
      (record.rejection === null && !fitsOnceWrittenAgain(record, body.length, limit))
    ) {
      // The request fits the policy topic but its record would not fit the decision stream:
      // record it without the request body (a bad request keeps its reason, a valid one is
      // denied for its size), so the answer is on record too.
      if (record.rejection === null) {
        const reason =
          body.length > limit
            ? `the request is too large to record: its decision record is ${body.length} bytes and the NATS server accepts at most ${limit}`
            : `the request is too large to record once written again: its numbers written out make its decision record and index entry larger than the ${limit} bytes the NATS server accepts, with room for a re-evaluation`;
        this.#rejectedWarning.count(1, { requestId, reason });
        record = rejectionRecord({ ok: false, requestId, reason, input: null, kind: record.kind }, context);
      } else {
        record = { ...record, request: null, truncated: { ...record.truncated, request: body.length } };
      }
      body = encodeDecisionRecord(record, null);
    }
    return { msg, requestId, record, body, answer };
  }
}

/**
 * How many times larger a request's JSON can get when it is parsed and written again: a number's
 * text grows the most (`1e20`, four characters, is written with twenty-one).
 */
const MOST_GROWTH_WRITTEN_AGAIN = 6;

/**
 * Room a record keeps under the limit for what a re-evaluation of it writes beside the request (the
 * new outcome's message, its rule lists and errors).
 */
const REEVALUATION_ROOM = 64 * 1024;

/**
 * Whether the record, written with its request parsed and written again (as the active index
 * writes its entry, and a re-evaluation its record), still fits the decision log's limit, with
 * room for a re-evaluation's outcome. A record whose bytes are a sixth of the limit or less fits
 * whatever its request holds, so the common request is never serialized again here.
 */
function fitsOnceWrittenAgain(record: UnsignedDecisionV1, bodyBytes: number, limit: number): boolean {
  if (bodyBytes * MOST_GROWTH_WRITTEN_AGAIN + REEVALUATION_ROOM <= limit) return true;
  return Buffer.byteLength(JSON.stringify(record)) + REEVALUATION_ROOM <= limit;
}

/**
 * A ULID randomness source drawing from a pooled `randomBytes` buffer: ulid asks for one value per
 * character, and one `getRandomValues` call per character was a visible share of a decision.
 */
function pooledRandom(): () => number {
  let pool = randomBytes(4096);
  let at = 0;
  return () => {
    if (at === pool.length) {
      pool = randomBytes(4096);
      at = 0;
    }
    return pool[at++]! / 256;
  };
}
