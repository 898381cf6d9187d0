import {
  ArbiterError,
  ErrorCode,
  isArbiterError,
  type ResourceNames,
  resourceNames,
} from "@arbiter/protocol";
import {
  DeliverPolicy,
  DiscardPolicy,
  JetStreamApiCodes,
  JetStreamApiError,
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
  jetstream,
  jetstreamManager,
  type OrderedConsumerOptions,
  RetentionPolicy,
  StorageType,
  type StoredMsg,
  type StreamConfig,
} from "@nats-io/jetstream";
import { type KV, Kvm } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/nats-core";
import { z } from "zod";
import { AckMux } from "./ack-mux.js";
import { activeBucketOptions, ensureActiveRepublish } from "./active-index.js";
import type {
  ArbiterStore,
  DecisionBatch,
  DecisionFilter,
  DecisionLog,
  Follower,
  RuleEventStore,
  SnapshotStore,
  StoredDecision,
  StoredRuleEvent,
} from "./contracts.js";
import {
  BATCH_CAUSE_HEADER,
  BATCH_SIGNATURE_HEADER,
  checkDecisionBatch,
  decisionMatches,
  decisionTexts,
  isSameBatch,
  REEVALUATION_BATCH_CAUSE,
  sealedDecisionTexts,
} from "./decision-batch.js";
import { DEFAULT_MAX_PAYLOAD, readsInFlight } from "./direct-get.js";
import { createFeedConsumer, DEFAULT_FEED_ACK_WAIT_MS, type FeedConsumerOutcome } from "./durable-feed.js";
import { RuleConflictError, StoreUnavailableError } from "./errors.js";
import { createExpiriesConsumer, expiriesStreamConfig } from "./expiry-timers.js";
import { orderedConsumer, orderedMessages } from "./ordered-read.js";
import { whilePlacing } from "./placement-retry.js";
import { DEFAULT_REPLAY_WINDOW_MS } from "./replay-guard.js";
import { errorText, keepsStoredSnapshot } from "./text.js";

/** The decision stream's limits (see {@link setDecisionsRetention}). */
export const DecisionsRetention = z.object({
  maxAgeMs: z.number().int().nonnegative().optional(),
  maxBytes: z.number().int().nonnegative().optional(),
});
export type DecisionsRetention = z.infer<typeof DecisionsRetention>;

/** The decision stream's limits before and after {@link setDecisionsRetention} (0: none). */
export interface RetentionChange {
  readonly before: Required<DecisionsRetention>;
  readonly after: Required<DecisionsRetention>;
}

/** Options for {@link openJetStreamStore}; parsed with defaults before anything is created. */
export const JetStreamStoreOptions = z.object({
  /** Prefix of every stream, subject and bucket name (default `arbiter`). */
  prefix: z
    .string()
    .regex(/^[A-Za-z0-9_-]+$/)
    .default("arbiter"),
  /** Replicas of every stream and bucket when they are created: 1 for one server, 3 in production. */
  replicas: z.number().int().min(1).max(5).default(1),
  /** How long to wait for a JetStream acknowledgement, in milliseconds. */
  ackTimeoutMs: z.number().int().positive().default(5000),
  /** Create missing streams and buckets (idempotent); false to only open existing ones. */
  create: z.boolean().default(true),
  /**
   * With `create`, also the replay bucket of signed requests (as an admin deploying Arbiter does);
   * false for a worker, which opens it only when it checks signatures.
   */
  createReplayBucket: z.boolean().default(true),
  /**
   * With `create`, also the revocation fan-out's active-index bucket, its expiries stream and its
   * three durable pull consumers (as an admin deploying Arbiter does); false for a worker, which
   * only binds to them.
   */
  createFanOut: z.boolean().default(true),
  /**
   * Ack wait of the fan-out's consumers when they are created: how long a rules revision being
   * re-evaluated (or a decision message being indexed) may go unacknowledged before another worker
   * takes it over.
   */
  revocationAckWaitMs: z.number().int().min(300).default(DEFAULT_FEED_ACK_WAIT_MS),
  /**
   * With `create`, the decision stream's retention: the oldest records age out past this age
   * (milliseconds; 0 for none) or this many bytes (0 for none). An existing stream's limits are
   * updated to these; absent, a new stream keeps everything and an existing one is left as it is.
   */
  decisionsRetention: DecisionsRetention.optional(),
});
export type JetStreamStoreOptions = z.input<typeof JetStreamStoreOptions>;

const SNAPSHOT_KEY = "snapshot";

/**
 * Opens (and by default creates, idempotently) Arbiter's streams and buckets on a NATS
 * connection that the caller owns. Throws `StoreUnavailableError` when JetStream is not there.
 */
export async function openJetStreamStore(
  nc: NatsConnection,
  options: JetStreamStoreOptions = {},
): Promise<
  ArbiterStore & {
    readonly names: ResourceNames;
    readonly decisionsRetention?: RetentionChange;
    /**
     * Set (to the consumer's name) when the active index's consumer, made without a filter by an
     * earlier release, could not be given one: its workers are delivered every re-evaluation batch
     * and skip it by its header.
     */
    readonly unfilteredIndexConsumer?: string;
  }
> {
  const config = JetStreamStoreOptions.parse(options);
  const names = resourceNames(config.prefix);
  const js = jetstream(nc, { timeout: config.ackTimeoutMs });
  let jsm: JetStreamManager;
  let retention: RetentionChange | undefined;
  try {
    jsm = await jetstreamManager(nc, { timeout: config.ackTimeoutMs });
    if (config.create) {
      await createResources(jsm, names, config.replicas, config.decisionsRetention);
      if (config.decisionsRetention) {
        retention = await setDecisionsRetention(jsm, names.decisionsStream, config.decisionsRetention);
      }
    }
  } catch (err) {
    if (isArbiterError(err)) throw err;
    throw new StoreUnavailableError(`JetStream is not available: ${errorText(err)}`, { cause: err });
  }
  const kv = await openBucket(js, names.rulesBucket, config.replicas, config.create);
  // Created with the rest, not by the first worker that checks signatures: whoever creates a stream
  // first chooses its configuration (a republish of its puts onto the rules subject, say), and with
  // the shipped permissions workers create none.
  if (config.create && config.createReplayBucket) {
    await whilePlacing(() =>
      new Kvm(js).create(names.replayBucket, {
        replicas: config.replicas,
        history: 1,
        ttl: DEFAULT_REPLAY_WINDOW_MS,
      }),
    ).catch((err: unknown) => {
      throw new StoreUnavailableError(`cannot open the ${names.replayBucket} bucket: ${errorText(err)}`, {
        cause: err,
      });
    });
  }
  let indexConsumer: FeedConsumerOutcome | undefined;
  if (config.create && config.createFanOut) {
    try {
      await whilePlacing(() =>
        new Kvm(js).create(names.activeBucket, activeBucketOptions(config.prefix, config.replicas)),
      );
      await ensureActiveRepublish(jsm, config.prefix);
      // Delivered the answered requests' batches only, not the re-evaluations' (never indexed).
      indexConsumer = await createFeedConsumer(
        jsm,
        names.decisionsStream,
        names.activeIndexConsumer,
        config.revocationAckWaitMs,
        { filterSubject: names.decisionsSubject },
      );
      await createFeedConsumer(jsm, names.rulesStream, names.revokerConsumer, config.revocationAckWaitMs);
      await ensureStream(jsm, expiriesStreamConfig(names, config.replicas));
      await createExpiriesConsumer(jsm, names, config.revocationAckWaitMs);
      await ensureStream(jsm, {
        retention: RetentionPolicy.Limits,
        storage: StorageType.File,
        discard: DiscardPolicy.Old,
        num_replicas: config.replicas,
        allow_direct: true,
        deny_delete: true,
        name: names.scansStream,
        subjects: [names.scansSubjects],
        duplicate_window: 120 * 1_000_000_000,
        max_age: 24 * 3600 * 1_000_000_000,
        description: "Arbiter split re-evaluations: parts of a rules revision to do, and done",
      });
      // Parts go to every worker at once (each holds one at a time); done parts stay out of it.
      await createFeedConsumer(jsm, names.scansStream, names.scanPartsConsumer, config.revocationAckWaitMs, {
        maxAckPending: 1024,
        filterSubject: `${names.scansSubjects.slice(0, -1)}part.>`,
      });
    } catch (err) {
      throw new StoreUnavailableError(
        `cannot create the revocation fan-out's bucket and consumers: ${errorText(err)}`,
        {
          cause: err,
        },
      );
    }
  }
  const decisions = new JetStreamDecisionLog(
    js,
    jsm,
    new AckMux(nc, names.decisionsStream, config.ackTimeoutMs),
    names,
  );
  return {
    names,
    ...(retention ? { decisionsRetention: retention } : {}),
    ...(indexConsumer === "refilter-refused" ? { unfilteredIndexConsumer: names.activeIndexConsumer } : {}),
    rules: new JetStreamRuleEventStore(js, jsm, names, () => nc.info?.max_payload ?? DEFAULT_MAX_PAYLOAD),
    snapshots: new KvSnapshotStore(kv),
    decisions,
    close: async () => decisions.close(),
  };
}

/**
 * Sets the decision stream's age and size limits where they differ from `retention` (unset
 * members are left as they are); with `discard: old`, the oldest messages then age out. Returns
 * the limits before and after.
 */
export async function setDecisionsRetention(
  jsm: JetStreamManager,
  stream: string,
  retention: DecisionsRetention,
): Promise<RetentionChange> {
  const info = await jsm.streams.info(stream);
  const before = {
    maxAgeMs: Math.round(info.config.max_age / 1_000_000),
    maxBytes: Math.max(info.config.max_bytes, 0),
  };
  const after = {
    maxAgeMs: retention.maxAgeMs ?? before.maxAgeMs,
    maxBytes: retention.maxBytes ?? before.maxBytes,
  };
  if (after.maxAgeMs !== before.maxAgeMs || after.maxBytes !== before.maxBytes) {
    await jsm.streams.update(stream, {
      ...info.config,
      max_age: after.maxAgeMs * 1_000_000,
      max_bytes: after.maxBytes === 0 ? -1 : after.maxBytes,
      duplicate_window: duplicateWindowNanos(after.maxAgeMs),
    });
  }
  return { before, after };
}

/** The decision stream's de-duplication window: 2 minutes, or its max age when shorter (JetStream's rule). */
function duplicateWindowNanos(maxAgeMs: number): number {
  const window = 120_000;
  return (maxAgeMs > 0 ? Math.min(window, maxAgeMs) : window) * 1_000_000;
}

/** Creates the streams Arbiter needs; an existing stream is left as it is. */
async function createResources(
  jsm: JetStreamManager,
  names: ResourceNames,
  replicas: number,
  retention: DecisionsRetention | undefined,
): Promise<void> {
  const common: Partial<StreamConfig> = {
    retention: RetentionPolicy.Limits,
    storage: StorageType.File,
    discard: DiscardPolicy.Old,
    num_replicas: replicas,
    allow_direct: true,
    deny_delete: true,
  };
  await ensureStream(jsm, {
    ...common,
    name: names.rulesStream,
    subjects: [names.rulesSubject],
    deny_purge: true,
    description: "Arbiter rule events (signed); the sequence is the rules revision",
  });
  await ensureStream(jsm, {
    ...common,
    name: names.decisionsStream,
    subjects: [names.decisionsSubjects],
    duplicate_window: duplicateWindowNanos(retention?.maxAgeMs ?? 0),
    ...(retention?.maxAgeMs ? { max_age: retention.maxAgeMs * 1_000_000 } : {}),
    ...(retention?.maxBytes ? { max_bytes: retention.maxBytes } : {}),
    description: "Arbiter decisions (signed), one per answer a host received",
  });
  await ensureStream(jsm, {
    ...common,
    name: names.revocationsStream,
    subjects: [names.revocationsSubjects],
    description: "Arbiter overrides of cached host decisions",
  });
}

async function ensureStream(
  jsm: JetStreamManager,
  config: Partial<StreamConfig> & { name: string },
): Promise<void> {
  try {
    await jsm.streams.info(config.name);
    return;
  } catch (err) {
    if (!(err instanceof JetStreamApiError) || err.code !== JetStreamApiCodes.StreamNotFound) throw err;
  }
  try {
    await whilePlacing(() => jsm.streams.add(config));
  } catch (err) {
    // Another worker may have created it between our look and our add: then it is there now.
    const there = await jsm.streams.info(config.name).then(
      () => true,
      () => false,
    );
    if (there) return;
    const replicas = config.num_replicas ?? 1;
    // A single server answers "replicas > 1 not supported in non-clustered mode", a cluster too
    // small "insufficient resources": either way the setting is wrong, not the service down.
    if (
      err instanceof JetStreamApiError &&
      replicas > 1 &&
      /insufficient resources|replicas > 1 not supported/i.test(err.message)
    ) {
      throw new ArbiterError(
        ErrorCode.InvalidConfig,
        `replicas ${replicas}: the NATS servers cannot hold ${replicas} replicas of stream ${config.name} (${err.message}); use 1 for a single server`,
        { cause: err },
      );
    }
    throw err;
  }
}

async function openBucket(js: JetStreamClient, name: string, replicas: number, create: boolean): Promise<KV> {
  const kvm = new Kvm(js);
  try {
    return create
      ? await whilePlacing(() => kvm.create(name, { replicas, history: 5 }))
      : await kvm.open(name);
  } catch (err) {
    throw new StoreUnavailableError(`cannot open the ${name} bucket: ${errorText(err)}`, { cause: err });
  }
}

class JetStreamRuleEventStore implements RuleEventStore {
  readonly #js: JetStreamClient;
  readonly #jsm: JetStreamManager;
  readonly #names: ResourceNames;
  readonly #maxPayload: () => number;

  constructor(js: JetStreamClient, jsm: JetStreamManager, names: ResourceNames, maxPayload: () => number) {
    this.#js = js;
    this.#jsm = jsm;
    this.#names = names;
    this.#maxPayload = maxPayload;
  }

  async append(text: string, expectedRevision: number): Promise<number> {
    try {
      const ack = await this.#js.publish(this.#names.rulesSubject, text, {
        expect: { lastSequence: expectedRevision, streamName: this.#names.rulesStream },
      });
      return ack.seq;
    } catch (err) {
      if (err instanceof JetStreamApiError && err.code === JetStreamApiCodes.StreamWrongLastSequence) {
        const actual = /wrong last sequence: (\d+)/.exec(err.message)?.[1];
        throw new RuleConflictError(expectedRevision, actual === undefined ? null : Number(actual), {
          cause: err,
        });
      }
      throw new StoreUnavailableError(`cannot append the rule event: ${errorText(err)}`, { cause: err });
    }
  }

  async lastRevision(): Promise<number> {
    try {
      const info = await this.#jsm.streams.info(this.#names.rulesStream);
      return info.state.last_seq;
    } catch (err) {
      throw new StoreUnavailableError(`cannot read the rules stream: ${errorText(err)}`, { cause: err });
    }
  }

  async get(revision: number): Promise<StoredRuleEvent | null> {
    if (!Number.isSafeInteger(revision) || revision < 1) return null;
    const message = await readOne(this.#jsm, this.#names.rulesStream, revision, {
      direct: false,
      what: `revision ${revision} of the rules`,
    });
    return message === null ? null : { revision: message.seq, text: message.string() };
  }

  async *read(range: { from?: number; to?: number } = {}): AsyncIterable<StoredRuleEvent> {
    const last = await this.lastRevision();
    const to = Math.min(range.to ?? last, last);
    const from = Math.max(range.from ?? 1, 1);
    if (from > to) return;
    for await (const message of readRange(
      this.#jsm,
      this.#names.rulesStream,
      { from, to },
      this.#maxPayload(),
    )) {
      yield { revision: message.seq, text: message.string() };
    }
  }

  async follow(from: number, onEvent: (event: StoredRuleEvent) => void): Promise<Follower> {
    const consumer = await this.#js.consumers.get(this.#names.rulesStream, {
      deliver_policy: DeliverPolicy.StartSequence,
      opt_start_seq: Math.max(from, 1),
    });
    // Pulls expire every 5 s, so a vanished stream is noticed within seconds (two missed
    // heartbeats), not the half-minute of the default.
    const messages = await consumer.consume({ max_messages: 64, expires: 5000 });
    let stopped = false;
    let broken: StoreUnavailableError | null = null;
    // An ordered consumer retries on its own for ever; a stream that is gone means the rules can
    // no longer be followed, so the tail ends there and its owner decides what to do.
    void (async () => {
      for await (const status of messages.status()) {
        if (status.type === "stream_not_found") {
          broken = new StoreUnavailableError(`the rules stream ${status.name} is gone`);
          await messages.close();
          return;
        }
      }
    })().catch(() => {});
    const ended = (async (): Promise<Error | null> => {
      try {
        for await (const m of messages) onEvent({ revision: m.seq, text: m.string() });
        return stopped ? null : (broken ?? new StoreUnavailableError("the rule event tail ended"));
      } catch (err) {
        return stopped
          ? null
          : new StoreUnavailableError(`the rule event tail broke: ${errorText(err)}`, { cause: err });
      }
    })();
    return {
      ended,
      stop: async () => {
        stopped = true;
        // Closing deletes the ordered consumer through the JetStream API, which a busy or recovering
        // server may answer late: a stop waits for it only so long (the server drops an idle
        // ephemeral consumer on its own).
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([
          messages.close().then(() => ended),
          new Promise<void>((resolve) => {
            timer = setTimeout(resolve, FOLLOW_STOP_GRACE_MS);
          }),
        ]).catch(() => {});
        clearTimeout(timer);
      },
    };
  }
}

/** How long stopping a rules tail waits for its consumer to be closed. */
const FOLLOW_STOP_GRACE_MS = 2000;

/** Messages a range read asks for at once, at most (see {@link readsInFlight}). */
const RANGE_READS_IN_FLIGHT = 64;

/**
 * The messages `from` to `to` (inclusive) of a stream, in order, each read by its sequence: with
 * a direct get, which every replica that has it answers, when the stream allows them (one a
 * replica did not have yet is read again from the stream's leader), else from the leader; a
 * message gone is skipped. No consumer is made: nats-server before 2.12 may place a reader's
 * ephemeral consumer on a node that is down, and with one node of three down about one read in
 * three timed out. Throws StoreUnavailableError naming what it could not read.
 */
async function* readRange(
  jsm: JetStreamManager,
  stream: string,
  { from, to }: { readonly from: number; readonly to: number },
  maxPayload: number,
): AsyncIterable<StoredMsg> {
  let direct: boolean;
  let window: number;
  try {
    const info = await jsm.streams.info(stream);
    direct = info.config.allow_direct === true;
    window = readsInFlight(RANGE_READS_IN_FLIGHT, info.state.bytes, maxPayload);
  } catch (err) {
    throw new StoreUnavailableError(`cannot read stream ${stream}: ${errorText(err)}`, { cause: err });
  }
  for (let at = from; at <= to; at += window) {
    const reads: Promise<StoredMsg | null>[] = [];
    for (let seq = at; seq <= Math.min(to, at + window - 1); seq++) {
      reads.push(readOne(jsm, stream, seq, { direct, what: `message ${seq} of ${stream}` }));
    }
    for (const message of await Promise.all(reads)) if (message !== null) yield message;
  }
}

/**
 * Message `seq` of `stream`, null when it is gone: with `direct`, from any replica that has it (else
 * the leader), or from the leader. Throws StoreUnavailableError naming `what` it could not read.
 */
async function readOne(
  jsm: JetStreamManager,
  stream: string,
  seq: number,
  { direct, what }: { readonly direct: boolean; readonly what: string },
): Promise<StoredMsg | null> {
  try {
    const replica = direct ? await jsm.direct.getMessage(stream, { seq }) : null;
    return replica ?? (await jsm.streams.getMessage(stream, { seq }));
  } catch (err) {
    if (err instanceof JetStreamApiError && err.code === JetStreamApiCodes.NoMessageFound) return null;
    throw new StoreUnavailableError(`cannot read ${what}: ${errorText(err)}`, { cause: err });
  }
}

class KvSnapshotStore implements SnapshotStore {
  readonly #kv: KV;

  constructor(kv: KV) {
    this.#kv = kv;
  }

  async load(): Promise<string | null> {
    try {
      const entry = await this.#kv.get(SNAPSHOT_KEY);
      return entry && entry.operation === "PUT" ? entry.string() : null;
    } catch (err) {
      throw new StoreUnavailableError(`cannot read the rules snapshot: ${errorText(err)}`, { cause: err });
    }
  }

  async save(text: string, revision: number): Promise<void> {
    for (let attempt = 0; attempt < 5; attempt++) {
      const entry = await this.#kv.get(SNAPSHOT_KEY);
      if (entry && entry.operation === "PUT" && keepsStoredSnapshot(entry.string(), text, revision)) return;
      try {
        if (entry) await this.#kv.update(SNAPSHOT_KEY, text, entry.revision);
        else await this.#kv.create(SNAPSHOT_KEY, text);
        return;
      } catch (err) {
        // Lost a race with another writer: look again and keep the later revision.
        if (!(err instanceof JetStreamApiError) || err.code !== JetStreamApiCodes.StreamWrongLastSequence) {
          throw new StoreUnavailableError(`cannot write the rules snapshot: ${errorText(err)}`, {
            cause: err,
          });
        }
      }
    }
  }
}

class JetStreamDecisionLog implements DecisionLog {
  readonly #js: JetStreamClient;
  readonly #jsm: JetStreamManager;
  readonly #acks: AckMux;
  readonly #stream: string;
  readonly #subject: string;
  readonly #reevaluationsSubject: string;
  readonly #subjects: string;

  constructor(js: JetStreamClient, jsm: JetStreamManager, acks: AckMux, names: ResourceNames) {
    this.#js = js;
    this.#jsm = jsm;
    this.#acks = acks;
    this.#stream = names.decisionsStream;
    this.#subject = names.decisionsSubject;
    this.#reevaluationsSubject = names.reevaluationsSubject;
    this.#subjects = names.decisionsSubjects;
  }

  close(): void {
    this.#acks.close();
  }

  async append(batch: DecisionBatch): Promise<{ seq: number; duplicate: boolean }> {
    checkDecisionBatch(batch);
    let ack: { seq: number; duplicate: boolean };
    try {
      // Re-evaluations on their own subject, which the projection's consumer is not delivered; the
      // header still tells a consumer made before the filter (or any reader) what they are.
      ack =
        batch.reevaluations === true
          ? await this.#acks.publish(this.#reevaluationsSubject, batch.lines, batch.decisionIds[0]!, {
              [BATCH_SIGNATURE_HEADER]: batch.signature,
              [BATCH_CAUSE_HEADER]: REEVALUATION_BATCH_CAUSE,
            })
          : await this.#acks.publish(this.#subject, batch.lines, batch.decisionIds[0]!, {
              [BATCH_SIGNATURE_HEADER]: batch.signature,
            });
    } catch (err) {
      throw new StoreUnavailableError(`the decision log did not acknowledge: ${errorText(err)}`, {
        cause: err,
      });
    }
    if (ack.duplicate) await this.#checkDuplicate(batch, ack.seq);
    return ack;
  }

  /**
   * A duplicate acknowledgement stores nothing: it says a message with the batch's id is already
   * there. It counts as this batch's record only when that message is this very batch (a retry);
   * any other message under the id (one published first by whoever learned or guessed it) leaves
   * this batch unrecorded, so the append fails.
   */
  async #checkDuplicate(batch: DecisionBatch, seq: number): Promise<void> {
    let stored: { data: Uint8Array; signature: string | undefined };
    try {
      const message = await this.#jsm.streams.getMessage(this.#stream, { seq });
      if (message === null) throw new Error(`message ${seq} is not there`);
      stored = { data: message.data, signature: message.header?.get(BATCH_SIGNATURE_HEADER) || undefined };
    } catch (err) {
      throw new StoreUnavailableError(
        `the decision log took decision ${batch.decisionIds[0]} for a duplicate of message ${seq}, which cannot be read back: ${errorText(err)}`,
        { cause: err },
      );
    }
    if (!isSameBatch(batch, stored)) {
      throw new StoreUnavailableError(
        `the decision log took decision ${batch.decisionIds[0]} for a duplicate of message ${seq}, which holds other decisions: this batch was not stored`,
      );
    }
  }

  async *read(filter: DecisionFilter = {}): AsyncIterable<StoredDecision> {
    // Kind and host are filtered here, not by subject: a batch holds whatever one worker decided
    // in one turn, for any host and kind.
    const options: Partial<OrderedConsumerOptions> = {
      filter_subjects: this.#subjects,
      ...(filter.since
        ? { deliver_policy: DeliverPolicy.StartTime, opt_start_time: filter.since.toISOString() }
        : { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: Math.max(filter.fromSeq ?? 1, 1) }),
    };
    const consumer = await orderedConsumer(this.#js, this.#stream, options, filter.signal);
    for await (const m of orderedMessages(consumer, filter.follow, filter.signal)) {
      const texts = filter.sealed === false ? decisionTexts(m.data) : storedTexts(m);
      for (const [index, text] of texts.entries()) {
        if (decisionMatches(text, filter)) yield { seq: m.seq, index, text };
      }
    }
  }
}

/** A decision message's records, sealed with the signature its header carries. */
function storedTexts(m: JsMsg): string[] {
  return sealedDecisionTexts(m.data, m.headers?.get(BATCH_SIGNATURE_HEADER) || undefined);
}
