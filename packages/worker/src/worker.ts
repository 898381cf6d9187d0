import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import {
  ArbiterError,
  DEFAULT_CHANGES_TOPIC,
  DEFAULT_POLICY_TOPIC,
  DEFAULT_PREFIX,
  DEFAULT_QUEUE_GROUP,
  decodePolicyRequest,
  ErrorCode,
  type UnsignedDecisionV1,
} from "@arbiter/protocol";
import {
  evolveRuleset,
  initialRulesetState,
  type RulesetState,
  type RulesetTrust,
  restoreSnapshot,
} from "@arbiter/rules";
import { type ArbiterStore, type Follower, openJetStreamStore, type StoredRuleEvent } from "@arbiter/store";
import { createSigner, decodePublicKey, generateKey, type Signer, signBatch } from "@arbiter/trust";
import type { Msg, NatsConnection, Subscription } from "@nats-io/nats-core";
import { type Logger, pino } from "pino";
import { monotonicFactory } from "ulid";
import { z } from "zod";
import {
  type DecidingWorker,
  decideRequest,
  decisionRecord,
  encodeDecisionRecord,
  rejectionRecord,
} from "./decide.js";
import { batchLines, batchRuns } from "./decision-batches.js";

/** Configuration of a decision worker, parsed and defaulted before anything starts. */
export const WorkerConfig = z.object({
  /** Stable name of this worker in decisions and status (default: host name, pid and a random suffix). */
  id: z.string().min(1).optional(),
  policyTopic: z.string().min(1).default(DEFAULT_POLICY_TOPIC),
  changesTopic: z.string().min(1).default(DEFAULT_CHANGES_TOPIC),
  queueGroup: z.string().min(1).default(DEFAULT_QUEUE_GROUP),
  prefix: z
    .string()
    .regex(/^[A-Za-z0-9_-]+$/)
    .default(DEFAULT_PREFIX),
  /** Replicas used when the worker has to create a stream or bucket. */
  replicas: z.number().int().min(1).max(5).default(1),
  /** Public keys (`O…`) whose signed rule events this worker accepts. */
  adminKeys: z.array(z.string()).default([]),
  /** This worker's signing seed (`SN…`); one is generated when absent. */
  workerSeed: z.string().optional(),
  /** Largest request accepted, in bytes. */
  maxPayloadBytes: z
    .number()
    .int()
    .positive()
    .default(1024 * 1024),
  /** How long to wait for JetStream to acknowledge a decision before denying. */
  ackTimeoutMs: z.number().int().positive().default(2000),
  /** How long `start()` waits to catch up with the rule events before serving anyway (degraded). */
  catchUpTimeoutMs: z.number().int().positive().default(30_000),
  /**
   * Requests waiting to be decided beyond which new ones are dropped unanswered: the host times out
   * and fails closed, as when no worker answers, and the worker's memory stays bounded.
   */
  maxQueuedRequests: z.number().int().positive().default(10_000),
});
export type WorkerConfig = z.input<typeof WorkerConfig>;

/** Lifecycle states shared by Arbiter's long-running parts. */
export type WorkerStatus = "starting" | "ready" | "degraded" | "stopped";

/** Counters a worker keeps since it started. */
export interface WorkerStats {
  readonly decisions: number;
  readonly permitted: number;
  readonly denied: number;
  /** Requests refused at the edge (bad input), answered with `permitted: false`. */
  readonly rejected: number;
  /** Requests that could not be answered because they carry no reply subject. */
  readonly unanswerable: number;
  /** Requests dropped unanswered because `maxQueuedRequests` were already waiting. */
  readonly shed: number;
  /** Answers that were denials because the decision log did not acknowledge. */
  readonly logFailures: number;
  readonly ruleEventsApplied: number;
  readonly ruleEventsRejected: number;
  readonly inFlight: number;
}

/** A running decision worker. */
export interface Worker {
  readonly id: string;
  readonly publicKey: string;
  readonly status: WorkerStatus;
  /** The rules revision decisions are made at now. */
  readonly revision: number;
  stats(): WorkerStats;
  /** Resolves once the worker has consumed rule events up to `revision`. */
  waitForRevision(revision: number, timeoutMs?: number): Promise<void>;
  start(): Promise<void>;
  /** Stops taking requests, answers every request already accepted, then stops following rules. */
  stop(): Promise<void>;
}

/** Dependencies of {@link createWorker}; the NATS connections belong to the caller. */
export interface WorkerDeps {
  /** The connection requests arrive on and answers leave by. */
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
  readonly clock?: () => Date;
}

/** Room left in a decision message for its headers (message id and batch signature). */
const HEADER_ROOM_BYTES = 1024;
/** NATS's default max_payload, for the moment before the server's INFO has arrived. */
const DEFAULT_MAX_PAYLOAD = 1024 * 1024;
/** Requests handled before the worker yields to I/O (acknowledgements, replies, new requests). */
const REQUESTS_PER_SLICE = 16;
/**
 * Most decisions signed together and, as far as NATS's max_payload allows, stored in one message.
 */
const DECISIONS_PER_BATCH = 32;

/** A decision made, waiting to be signed, recorded and answered. */
interface Decided {
  readonly msg: Msg;
  readonly requestId: string;
  readonly record: UnsignedDecisionV1;
  /** The record's JSON text in UTF-8. */
  readonly body: Buffer;
}

/**
 * Creates a decision worker: it joins the queue group on the policy topic, decides each request
 * under the current rules, records the decision in JetStream and only then replies. Throws
 * `ArbiterError` (INVALID_CONFIG) for a bad configuration.
 */
export function createWorker(deps: WorkerDeps): Worker {
  return new DecisionWorker(deps, parseWorkerConfig(deps.config ?? {}));
}

/** Validates a worker configuration and fills in its defaults; throws `ArbiterError` (INVALID_CONFIG) naming each problem. */
export function parseWorkerConfig(config: WorkerConfig): z.output<typeof WorkerConfig> {
  const parsed = WorkerConfig.safeParse(config);
  if (!parsed.success) {
    const problems = parsed.error.issues
      .map((i) => `${i.path.join(".") || "config"}: ${i.message}`)
      .join("; ");
    throw new ArbiterError(ErrorCode.InvalidConfig, `invalid worker configuration: ${problems}`);
  }
  return parsed.data;
}

class DecisionWorker implements Worker {
  readonly id: string;
  readonly publicKey: string;
  readonly #nc: NatsConnection;
  readonly #storeNc: NatsConnection;
  readonly #config: z.output<typeof WorkerConfig>;
  readonly #log: Logger;
  readonly #signer: Signer;
  #ownsStore = false;
  readonly #identity: DecidingWorker;
  readonly #trust: RulesetTrust;
  readonly #clock: () => Date;
  readonly #nextId = monotonicFactory(pooledRandom());
  readonly #inFlight = new Set<Promise<void>>();
  #queue: Msg[] = [];
  /** Decisions made but not yet signed and recorded. */
  #decided: Decided[] = [];
  #shedSinceWarning = 0;
  #lastShedWarning = 0;
  #draining = false;
  readonly #revisionWaiters = new Set<() => void>();
  #store: ArbiterStore | undefined;
  #ruleset: RulesetState = initialRulesetState();
  #status: WorkerStatus = "stopped";
  #subscription: Subscription | undefined;
  #follower: Follower | undefined;
  #stats = {
    decisions: 0,
    permitted: 0,
    denied: 0,
    rejected: 0,
    unanswerable: 0,
    shed: 0,
    logFailures: 0,
    ruleEventsApplied: 0,
    ruleEventsRejected: 0,
  };

  constructor(deps: WorkerDeps, config: z.output<typeof WorkerConfig>) {
    this.#nc = deps.nc;
    this.#storeNc = deps.storeNc ?? deps.nc;
    this.#config = config;
    this.#store = deps.store;
    this.#clock = deps.clock ?? (() => new Date());
    this.#signer = createSigner(config.workerSeed ?? generateKey("N").seed, "N");
    this.id = config.id ?? `${hostname()}-${process.pid}-${randomBytes(3).toString("hex")}`;
    this.publicKey = this.#signer.publicKey;
    this.#identity = { id: this.id, publicKey: this.publicKey };
    this.#log = (deps.logger ?? pino({ name: "arbiter-worker" })).child({ worker: this.id });
    for (const key of config.adminKeys) {
      try {
        decodePublicKey(key, "O");
      } catch (err) {
        throw new ArbiterError(
          ErrorCode.InvalidConfig,
          `invalid admin key ${JSON.stringify(key)}: ${(err as Error).message}`,
        );
      }
    }
    this.#trust = { adminKeys: new Set(config.adminKeys) };
  }

  get status(): WorkerStatus {
    return this.#status;
  }

  get revision(): number {
    return this.#ruleset.revision;
  }

  stats(): WorkerStats {
    return { ...this.#stats, inFlight: this.#inFlight.size };
  }

  async start(): Promise<void> {
    if (this.#status !== "stopped")
      throw new ArbiterError(ErrorCode.Internal, `worker ${this.id} is already ${this.#status}`);
    this.#status = "starting";
    if (this.#trust.adminKeys.size === 0) {
      this.#log.warn("no admin keys configured: every rule event will be rejected and every request denied");
    }
    this.#ownsStore = this.#store === undefined;
    this.#store ??= await openJetStreamStore(this.#storeNc, {
      prefix: this.#config.prefix,
      replicas: this.#config.replicas,
      ackTimeoutMs: this.#config.ackTimeoutMs,
    });
    const store = this.#store;

    const snapshot = await store.snapshots.load();
    if (snapshot !== null) {
      const restored = restoreSnapshot(snapshot, this.#trust);
      if (restored.ok) this.#ruleset = restored.state;
      else
        this.#log.warn({ reason: restored.reason }, "ignoring the rules snapshot; reading the whole history");
    }
    const target = await store.rules.lastRevision();
    this.#follower = await store.rules.follow(this.#ruleset.revision + 1, (event) =>
      this.#onRuleEvent(event),
    );
    let caughtUp = true;
    try {
      await this.waitForRevision(target, this.#config.catchUpTimeoutMs);
    } catch {
      caughtUp = false;
      this.#log.error(
        { target, revision: this.revision },
        "did not catch up with the rule events in time; serving degraded",
      );
    }

    this.#subscription = this.#nc.subscribe(this.#config.policyTopic, {
      queue: this.#config.queueGroup,
      callback: (err, msg) => {
        if (err) {
          this.#log.error({ err }, "policy subscription failed");
          this.#status = "degraded";
          return;
        }
        if (this.#queue.length >= this.#config.maxQueuedRequests) {
          this.#shed();
          return;
        }
        this.#queue.push(msg);
        if (!this.#draining) {
          this.#draining = true;
          setImmediate(() => this.#drainQueue());
        }
      },
    });
    await this.#nc.flush();
    this.#status = caughtUp ? "ready" : "degraded";
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
    if (this.#status === "stopped") return;
    const subscription = this.#subscription;
    this.#subscription = undefined;
    if (subscription && !subscription.isClosed()) await subscription.drain().catch(() => {});
    while (this.#inFlight.size > 0 || this.#queue.length > 0) {
      if (this.#inFlight.size > 0) await Promise.allSettled([...this.#inFlight]);
      else await new Promise((resolve) => setImmediate(resolve));
    }
    await this.#follower?.stop();
    this.#follower = undefined;
    if (this.#ownsStore) {
      await this.#store?.close();
      this.#store = undefined;
    }
    this.#status = "stopped";
    this.#log.info({ stats: this.stats() }, "worker stopped");
  }

  waitForRevision(revision: number, timeoutMs = 30_000): Promise<void> {
    if (this.#ruleset.revision >= revision) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const check = () => {
        if (this.#ruleset.revision < revision) return;
        clearTimeout(timer);
        this.#revisionWaiters.delete(check);
        resolve();
      };
      const timer = setTimeout(() => {
        this.#revisionWaiters.delete(check);
        reject(
          new ArbiterError(
            ErrorCode.StoreUnavailable,
            `rules revision ${revision} not reached within ${timeoutMs} ms (at ${this.revision})`,
          ),
        );
      }, timeoutMs);
      this.#revisionWaiters.add(check);
    });
  }

  #onRuleEvent(event: StoredRuleEvent): void {
    if (event.revision <= this.#ruleset.revision) return;
    const { state, outcome } = evolveRuleset(this.#ruleset, event, this.#trust);
    this.#ruleset = state;
    if (outcome.applied) {
      this.#stats.ruleEventsApplied++;
      this.#log.info({ revision: state.revision, rules: state.document?.rules.length ?? 0 }, "rules updated");
    } else {
      this.#stats.ruleEventsRejected++;
      this.#log.warn(
        { revision: event.revision, reason: outcome.reason },
        "rule event rejected; keeping the current rules",
      );
    }
    for (const wake of this.#revisionWaiters) wake();
  }

  /** Counts a dropped request and says so, at most once a second, with how many since. */
  #shed(): void {
    this.#stats.shed++;
    this.#shedSinceWarning++;
    const now = Date.now();
    if (now - this.#lastShedWarning < 1000) return;
    this.#log.warn(
      { dropped: this.#shedSinceWarning, queued: this.#queue.length, limit: this.#config.maxQueuedRequests },
      "overloaded: dropping policy requests unanswered (hosts fail closed)",
    );
    this.#lastShedWarning = now;
    this.#shedSinceWarning = 0;
  }

  /**
   * Handles queued requests a slice at a time, yielding to I/O between slices, so acknowledgements
   * and replies are not held behind a long run of new requests. Decisions are signed and recorded
   * in batches, one when the queue runs dry or a batch is full.
   */
  #drainQueue(): void {
    let slice: Msg[];
    if (this.#queue.length <= REQUESTS_PER_SLICE) {
      slice = this.#queue;
      this.#queue = [];
    } else {
      slice = this.#queue.splice(0, REQUESTS_PER_SLICE);
    }
    const decided = this.#decided;
    for (const msg of slice) {
      const decision = this.#decide(msg);
      if (decision !== null) decided.push(decision);
    }
    // Decisions wait for the queue to run dry (or for a full batch) before they are recorded: one
    // message per burst of requests, while the slices still let acknowledgements through.
    if (decided.length >= DECISIONS_PER_BATCH || (this.#queue.length === 0 && decided.length > 0)) {
      this.#decided = [];
      this.#track(this.#record(decided));
    }
    if (this.#queue.length > 0) setImmediate(() => this.#drainQueue());
    else this.#draining = false;
  }

  /**
   * Decides one request, or answers it at once when that is all that can be done (no reply
   * subject: nothing; an internal failure: a denial). Never throws.
   */
  #decide(msg: Msg): Decided | null {
    const started = process.hrtime.bigint();
    const ruleset = this.#ruleset;
    const now = this.#clock();
    const decoded = decodePolicyRequest(msg.data, { maxBytes: this.#config.maxPayloadBytes });
    if (!msg.reply) {
      this.#stats.unanswerable++;
      this.#log.warn(
        { requestId: decoded.ok ? decoded.request.requestId : decoded.requestId },
        "policy request without a reply subject; not answered",
      );
      return null;
    }
    const requestId = decoded.ok ? decoded.request.requestId : (decoded.requestId ?? "");
    try {
      const context = {
        decisionId: this.#nextId(),
        revision: ruleset.revision,
        now,
        worker: this.#identity,
        latencyMicros: 0,
      };
      let record: UnsignedDecisionV1;
      if (decoded.ok) {
        record = decisionRecord(decoded.request, decideRequest(decoded.request, ruleset, now), context);
      } else {
        this.#stats.rejected++;
        this.#log.warn({ requestId, reason: decoded.reason }, "rejected a policy request");
        record = rejectionRecord({ ...decoded, requestId }, context);
      }
      record.latencyMicros = Number((process.hrtime.bigint() - started) / 1000n);
      let body = encodeDecisionRecord(record, decoded.ok ? msg.data : null);
      const limit = this.#storeNc.info?.max_payload;
      if (limit !== undefined && body.length > limit - HEADER_ROOM_BYTES) {
        // The request fits the policy topic but its record would not fit the decision stream:
        // deny it, and record that (without the request body) so the denial is on record too.
        const reason = `the request is too large to record: its decision record is ${body.length} bytes and the NATS server accepts at most ${limit}`;
        this.#log.warn({ requestId, reason }, "rejected a policy request");
        record = rejectionRecord({ ok: false, requestId, reason, input: null, kind: record.kind }, context);
        body = Buffer.from(JSON.stringify(record));
      }
      return { msg, requestId, record, body };
    } catch (err) {
      // Deciding never throws by contract; this guards against a defect, not input.
      this.#log.error({ err, requestId }, "decision failed");
      this.#reply(msg, requestId, false, "Arbiter could not decide this request (internal error); denied");
      return null;
    }
  }

  /**
   * Stores `decided` in as few messages as the server's max_payload allows, each signed once, and
   * answers each request once its message is acknowledged. Never rejects.
   */
  async #record(decided: readonly Decided[]): Promise<void> {
    const limit = (this.#storeNc.info?.max_payload ?? DEFAULT_MAX_PAYLOAD) - HEADER_ROOM_BYTES;
    const sizes = decided.map((d) => d.body.length + 1);
    await Promise.all(
      batchRuns(sizes, limit).map(([from, to]) => this.#appendAndAnswer(decided.slice(from, to))),
    );
  }

  #track(work: Promise<void>): void {
    // #record answers every failure itself; this only keeps a defect from becoming a crash.
    const tracked = work.catch((err: unknown) =>
      this.#log.error({ err }, "unexpected failure answering requests"),
    );
    this.#inFlight.add(tracked);
    void tracked.finally(() => this.#inFlight.delete(tracked));
  }

  /**
   * Signs decisions as one batch and appends them to the decision log as one message, then answers
   * their requests: as decided, or denied when signing or the log failed.
   */
  async #appendAndAnswer(decided: readonly Decided[]): Promise<void> {
    const bodies = decided.map((d) => d.body);
    let signature: string;
    try {
      signature = signBatch(bodies, this.#signer);
    } catch (err) {
      this.#log.error({ err }, "could not sign decisions");
      for (const d of decided) {
        this.#reply(
          d.msg,
          d.requestId,
          false,
          "Arbiter could not sign its decision (internal error); denied",
        );
      }
      return;
    }
    try {
      await this.#store!.decisions.append({
        decisionIds: decided.map((d) => d.record.decisionId),
        lines: batchLines(bodies),
        signature,
      });
    } catch (err) {
      this.#stats.logFailures += decided.length;
      this.#log.error(
        { err, requestIds: decided.map((d) => d.requestId) },
        "decision log unavailable; denying",
      );
      const message = `Arbiter's decision log is unavailable, so nothing can be permitted: ${(err as Error).message}`;
      for (const d of decided) this.#reply(d.msg, d.requestId, false, message);
      return;
    }
    for (const d of decided) {
      this.#stats.decisions++;
      if (d.record.permitted) this.#stats.permitted++;
      else this.#stats.denied++;
      this.#reply(d.msg, d.requestId, d.record.permitted, d.record.message);
    }
  }

  #reply(msg: Msg, requestId: string, permitted: boolean, message: string): void {
    try {
      msg.respond(Buffer.from(JSON.stringify({ requestId, permitted, message })));
    } catch (err) {
      this.#log.error({ err, requestId }, "could not send the answer");
    }
  }
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
