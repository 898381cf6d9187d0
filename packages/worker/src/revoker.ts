import { performance } from "node:perf_hooks";
import { setTimeout as delay } from "node:timers/promises";
import {
  type ActiveDecisionV1,
  type ResourceNames,
  ScanPartV1,
  type UnsignedDecisionV1,
} from "@arbiter/protocol";
import { type RulesetState, ruleEventHash } from "@arbiter/rules";
import {
  type ActiveIndex,
  activeEntryKey,
  BATCH_CAUSE_HEADER,
  BATCH_SIGNATURE_HEADER,
  type DecisionLog,
  type DurableFeed,
  type FeedMessage,
  type FramedDecisionBatch,
  frameDecisionBatches,
  type IndexMirror,
  type MirrorView,
  maxDecisionRecordBytes,
  openDurableFeed,
  type PiecedDecision,
  REEVALUATION_BATCH_CAUSE,
  type RevocationLog,
  type ScanParts,
  verifyDecisionBatch,
} from "@arbiter/store";
import { MerkleThread, type Signer, signBatch, signBatchRoot } from "@arbiter/trust";
import type { NatsConnection } from "@nats-io/nats-core";
import type { Logger } from "pino";
import {
  projectDecision,
  type Reevaluation,
  reevaluate,
  reevaluatedRequest,
  revocationFor,
  trustResultOf,
} from "./active-projection.js";
import { overrideBytes, prepareChangeTexts, revocationText } from "./change-texts.js";
import type { ChangesSubjects } from "./changes-subjects.js";
import { DEFAULT_SCAN_PART_SIZE } from "./config.js";
import type { DecidingWorker } from "./decide.js";
import { ExpiryTimers, expiryRecordId, expiryStep, runsOfOne } from "./expiry-timers.js";
import { indexHostRecords, isPrunedDecision, withoutPrunedHosts } from "./host-lifecycle.js";
import { prepareRecordParts, reevaluationRecordEncoder } from "./reevaluation-record.js";

/** Longest wait for this worker's own rules to reach a revision it was handed to re-evaluate. */
const RULES_WAIT_MS = 100_000;

/** What the revoker needs from its worker. */
export interface RevokerDeps {
  /** The connection for JetStream and for publishing overrides. */
  readonly nc: NatsConnection;
  readonly names: ResourceNames;
  /** The subject of each override: the shared changes topic, or the host's own. */
  readonly changes: ChangesSubjects;
  /** Opens the active index (the supervisor calls it until it succeeds). */
  readonly openIndex: () => Promise<ActiveIndex>;
  /**
   * Opens this worker's mirror of the index (the supervisor calls it until it succeeds); without
   * it every re-evaluation reads the index from the server.
   */
  readonly openMirror?: () => Promise<IndexMirror>;
  readonly revocations: RevocationLog;
  readonly decisions: DecisionLog;
  /** The worker's rules as they are now, and a way to wait for a revision. */
  readonly rules: {
    readonly ruleset: RulesetState;
    waitForRevision(revision: number, timeoutMs?: number): Promise<void>;
  };
  /** The rules stream's last revision now. */
  rulesRevision(): Promise<number>;
  /** Worker keys enrolled by configuration (`ARBITER_WORKER_KEYS`). */
  readonly workerKeys: readonly string[];
  /**
   * Whether this worker may sign under `ruleset` (its key enrolled there, or serving unenrolled as
   * told); default always. A re-evaluation it may not sign fails, and goes to another worker.
   */
  readonly maySign?: (ruleset: RulesetState) => boolean;
  readonly signer: Signer;
  readonly identity: DecidingWorker;
  readonly nextId: () => string;
  readonly clock: () => Date;
  readonly log: Logger;
  /** Longest wait for the index to catch up with the decision log before a scan. */
  readonly catchUpTimeoutMs?: number;
  /**
   * Opens the split re-evaluation's parts (the supervisor calls it with the feeds); without it
   * this worker scans every revision alone and takes no parts.
   */
  readonly openScanParts?: () => Promise<ScanParts>;
  /** Entries per part of a split re-evaluation; an index no larger is scanned by its taker alone. */
  readonly scanPartSize?: number;
}

/** Counters of a {@link Revoker}. */
export interface RevokerStats {
  /** Decisions put into the active index. */
  readonly projected: number;
  /** Decision messages left out of the index: not a batch signed by an enrolled worker key. */
  readonly refusedBatches: number;
  /** Decisions left out because their request id is already another entry's. */
  readonly refusedRequestIds: number;
  /** Rules revisions re-evaluated by this worker. */
  readonly revisionsScanned: number;
  /** Overrides published by this worker. */
  readonly overrides: number;
  /** The last revision this worker re-evaluated (0 before the first). */
  readonly lastScanned: number;
  /** How long that re-evaluation took, from taking the revision to its last override published (ms). */
  readonly lastScanMs: number;
  /** Revisions this worker took and split into parts. */
  readonly revisionsSplit: number;
  /** Parts of split re-evaluations this worker did (its own revisions' and others'). */
  readonly partsDone: number;
  /** Changed entries not written back: their key was written meanwhile (a newer request, a prune). */
  readonly changedMeanwhile: number;
}

/**
 * The counters of a revoker as they appear among a worker's status counters: each name prefixed
 * with `fanout` (`fanoutOverrides`, …); none when the worker runs no revoker.
 */
export function revokerCounters(stats: RevokerStats | undefined): Record<string, number> {
  if (stats === undefined) return {};
  const out: Record<string, number> = {};
  for (const [name, value] of Object.entries(stats)) {
    out[`fanout${name[0]?.toUpperCase()}${name.slice(1)}`] = value;
  }
  return out;
}

/** Longest a stopping revoker waits for the message it is handling. */
const STOP_GRACE_MS = 2000;

/** How often the taker of a split revision looks whether every part is done. */
const PARTS_POLL_MS = 20;

/** How often the taker publishes again the parts not done yet (a no-op while they are queued). */
const PARTS_REPUBLISH_MS = 30_000;

/** Counts of one re-evaluation (or part): entries read, entries changed, overrides published. */
interface ScanCounts {
  readonly scanned: number;
  readonly changed: number;
  readonly overrides: number;
}

/**
 * How many changed entries are recorded and published together (one signed decision batch, as
 * far as max_payload allows: about two messages of a megabyte at this size): fewer, larger writes
 * and signatures per override, and nats-server hands each host its overrides in fewer writes.
 */
const CHUNK = 1024;

/**
 * Bytes of requests the changed entries of one chunk hold at most, beyond which it is written
 * before {@link CHUNK}: a host chooses how large its requests are, and a chunk holds each with its
 * records until they are acknowledged (1,024 of a host's 860 KB requests were a gigabyte or two).
 */
const CHUNK_BYTES = 8 * 1024 * 1024;

/** The size of a scan's first chunk; each next one is twice as large, up to {@link CHUNK}. */
const FIRST_CHUNK = 32;

/** Chunks being recorded and published at once during a scan (few: each holds its entries meanwhile). */
const CHUNKS_IN_FLIGHT = 2;

/**
 * Changed entries a scan holds before writing them into the index: the writes wait until the
 * overrides are out (hosts first), but not beyond this many.
 */
const UPDATES_HELD = 16_384;

/**
 * Bytes of requests the changed entries a scan holds for the index may reach before they are
 * written, whatever their count: read from the server, those entries are held by nothing else.
 */
const UPDATES_HELD_BYTES = 64 * 1024 * 1024;

/** Index writes in flight at once. */
const UPDATES_IN_FLIGHT = 1024;

/**
 * The revocation fan-out of one worker: it projects the decision log into the active index and
 * re-evaluates each rules revision against it, sharing both durable consumers with the other
 * workers, so each decision message is projected once and each revision re-evaluated once
 * across the cluster (again by another worker when the one holding it dies).
 */
export class Revoker {
  readonly #deps: RevokerDeps;
  #projection: DurableFeed | undefined;
  #scans: DurableFeed | undefined;
  #partsFeed: DurableFeed | undefined;
  #scanParts: ScanParts | undefined;
  #supervisor: Promise<void> = Promise.resolve();
  #index: ActiveIndex | undefined;
  #mirror: IndexMirror | undefined;
  /** Hashes the scans' record batches off the thread that makes them (started with the revoker). */
  #hashing: MerkleThread | undefined;
  /** Why the last re-evaluation could not read the mirror (logged when it changes). */
  #mirrorRefusal: string | null = null;
  readonly #expiries: ExpiryTimers;
  #stopped = false;
  /** True while this worker leaves its feeds to the others (its key not enrolled). */
  #suspended = false;
  /** The feeds' stopping when the revoker was last suspended. */
  #suspending: Promise<void> = Promise.resolve();
  /** Interrupts the supervisor's wait (set while it waits). */
  #wake: () => void = () => {};
  #stats = {
    projected: 0,
    refusedBatches: 0,
    refusedRequestIds: 0,
    revisionsScanned: 0,
    overrides: 0,
    lastScanned: 0,
    lastScanMs: 0,
    revisionsSplit: 0,
    partsDone: 0,
    changedMeanwhile: 0,
  };

  constructor(deps: RevokerDeps) {
    this.#deps = deps;
    this.#expiries = new ExpiryTimers({
      ...deps,
      index: () => this.#activeIndex(),
      readEntries: async (read) => {
        using view = await this.#view();
        await read(view !== null ? view.entryRunsOf(view.keys()) : runsOfOne(this.#activeIndex().entries()));
      },
      revoke: async (changed, revision, recordId) => {
        await this.#revoke(changed, revision, recordId);
      },
      log: deps.log.child({ part: "expiries" }),
    });
  }

  /** A snapshot of the counters. */
  get stats(): RevokerStats {
    return { ...this.#stats };
  }

  /**
   * Opens (creating if needed) both durable consumers, in the background: the answers to hosts do
   * not wait for the fan-out. While JetStream cannot give them (a cluster still electing its
   * leaders, a stream gone) it says so in the log and tries again, every 250 ms doubling up to 5 s;
   * a feed that ends on its own is opened again the same way. Never throws.
   */
  start(): void {
    // Started now: a thread takes tens of milliseconds to start, which a scan must not wait for.
    this.#hashing ??= new MerkleThread({
      onFailure: (reason) =>
        this.#deps.log.warn({ reason }, "re-evaluation records are hashed on the worker's own thread"),
    });
    this.#supervisor = this.#supervise();
    this.#expiries.start();
  }

  /**
   * Leaves the fan-out's feeds (the index projection, the revisions, the parts, the expiry timers)
   * to the other workers until {@link resume}: a worker whose key was removed must sign nothing
   * more. A message being handled gives up and goes to another worker, as when stopping.
   */
  suspend(): Promise<void> {
    if (this.#suspended || this.#stopped) return this.#suspending;
    this.#suspended = true;
    this.#wake();
    this.#suspending = Promise.all([
      this.#scans?.stop(),
      this.#partsFeed?.stop(),
      this.#projection?.stop(),
      this.#expiries.stop(),
    ]).then(() => {});
    return this.#suspending;
  }

  /** Takes the feeds again after {@link suspend} (its key enrolled again). */
  async resume(): Promise<void> {
    await this.#suspending;
    if (!this.#suspended || this.#stopped) return;
    this.#suspended = false;
    this.#wake();
    this.#expiries.start();
  }

  /** Stops taking messages; a message being handled gives up or finishes first. */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#wake();
    const stopped = (async () => {
      await this.#supervisor;
      await Promise.all([
        this.#scans?.stop(),
        this.#partsFeed?.stop(),
        this.#projection?.stop(),
        this.#expiries.stop(),
      ]);
      this.#scanParts?.close();
      this.#mirror?.close();
      await this.#hashing?.close();
      await this.#index?.close();
    })();
    // A handler stuck on JetStream (gone while stopping) must not hold the worker: what it held
    // unacknowledged goes to another worker after the ack wait.
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      stopped,
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, STOP_GRACE_MS);
      }),
    ]);
    clearTimeout(timer);
  }

  async #supervise(): Promise<void> {
    const { nc, names, log } = this.#deps;
    let pause = 250;
    while (!this.#stopped) {
      if (this.#suspended) {
        // Stopped by suspend(): opened again, as new feeds, once resumed.
        this.#projection = undefined;
        this.#scans = undefined;
        this.#partsFeed = undefined;
        await new Promise<void>((resolve) => {
          this.#wake = resolve;
        });
        continue;
      }
      try {
        this.#index ??= await this.#deps.openIndex();
        if (this.#deps.openMirror !== undefined) this.#mirror ??= await this.#deps.openMirror();
        this.#projection ??= await openDurableFeed(
          nc,
          { stream: names.decisionsStream, consumer: names.activeIndexConsumer },
          (m) => this.#sayingWhenItFails("the active index projection", m, () => this.#project(m)),
        );
        this.#scans ??= await openDurableFeed(
          nc,
          { stream: names.rulesStream, consumer: names.revokerConsumer },
          (m) => this.#sayingWhenItFails("the re-evaluation of a rules revision", m, () => this.#scan(m)),
        );
        if (this.#deps.openScanParts !== undefined) {
          this.#scanParts ??= await this.#deps.openScanParts();
          this.#partsFeed ??= await openDurableFeed(
            nc,
            { stream: names.scansStream, consumer: names.scanPartsConsumer },
            (m) => this.#scanPart(m),
          );
        }
        pause = 250;
        const { projection, scans, parts } = {
          projection: this.#projection,
          scans: this.#scans,
          parts: this.#partsFeed,
        };
        const ended = await Promise.race([
          projection.ended.then((err) => ({ feed: "projection" as const, err })),
          scans.ended.then((err) => ({ feed: "scans" as const, err })),
          ...(parts === undefined ? [] : [parts.ended.then((err) => ({ feed: "parts" as const, err }))]),
          new Promise<null>((resolve) => {
            this.#wake = () => resolve(null);
          }),
        ]);
        if (this.#stopped) return;
        // Woken: suspended (seen above).
        if (ended === null) continue;
        log.warn({ err: ended.err }, `the revocation fan-out's ${ended.feed} feed ended; opening it again`);
        if (ended.feed === "projection") this.#projection = undefined;
        else if (ended.feed === "scans") this.#scans = undefined;
        else this.#partsFeed = undefined;
      } catch (err) {
        if (this.#stopped) return;
        log.warn({ err, retryInMs: pause }, "the revocation fan-out cannot open its feeds yet; trying again");
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, pause);
          this.#wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        pause = Math.min(pause * 2, 5000);
      }
    }
  }

  /**
   * Projects one message of the decision log: only a batch whose signature verifies under a worker
   * key enrolled at its decisions' revisions counts; anything else published there stays out.
   */
  async #project(m: FeedMessage): Promise<void> {
    const { rules, log } = this.#deps;
    // Never indexed (see projectDecision): not even verified.
    if (m.header(BATCH_CAUSE_HEADER) === REEVALUATION_BATCH_CAUSE) return;
    let verified = this.#verify(m, rules.ruleset);
    const newest = verified.valid ? Math.max(...verified.decisions.map((d) => d.revision)) : 0;
    if (
      (!verified.valid || verified.unenrolled > 0 || newest > rules.ruleset.revision) &&
      rules.ruleset.broken === null
    ) {
      // Enrollment is judged at the decisions' revision: a worker enrolled by a rule event this
      // worker has not folded yet is enrolled all the same once it has.
      const last = await this.#deps.rulesRevision();
      if (last > rules.ruleset.revision) {
        await rules.waitForRevision(last, 5000).catch(() => {});
        verified = this.#verify(m, rules.ruleset);
      }
    }
    const ruleset = rules.ruleset;
    if (!verified.valid) {
      this.#stats.refusedBatches++;
      log.warn({ seq: m.seq, reason: verified.reason }, "a decision message left out of the active index");
      return;
    }
    // Entries are independent: each one's decisions in order, the entries side by side.
    const byEntry = new Map<string, UnsignedDecisionV1[]>();
    for (const decision of verified.decisions) {
      // Not even read: the revoker that made a re-evaluation puts its entry itself (projectDecision).
      if (decision.cause === "reevaluation") continue;
      const key = activeEntryKey(decision);
      const list = byEntry.get(key);
      if (list === undefined) byEntry.set(key, [decision]);
      else list.push(decision);
    }
    await Promise.all(
      [...byEntry.values()].map(async (list) => {
        for (const decision of list) await this.#projectOne(decision, m.seq, ruleset);
      }),
    );
  }

  async #projectOne(decision: UnsignedDecisionV1, seq: number, ruleset: RulesetState): Promise<void> {
    const { log } = this.#deps;
    const index = this.#activeIndex();
    const existing = await index.get(decision);
    const projection = projectDecision(decision, seq, existing);
    if (projection.action === "skip") return;
    const { entry } = projection;
    // A decision in flight when its host was pruned must not bring the host's entry back.
    if (await isPrunedDecision(index, entry)) return;
    if (decision.cause === "request" && !(await index.claimRequestId(entry.requestId, entry))) {
      this.#stats.refusedRequestIds++;
      log.warn(
        { seq, requestId: entry.requestId, host: entry.host, cacheKey: entry.cacheKey },
        "a decision reuses the request id of another host's cached decision; left out of the active index",
      );
      return;
    }
    await index.put(entry);
    this.#stats.projected++;
    if (decision.cause !== "request") return;
    const now = this.#deps.clock();
    const expiry = expiryStep(entry, now);
    // Decided under rules older than this worker's, a scan of the newer revision may not have seen
    // it; past its claims' expiry, their timer may have fired before it was here.
    if (entry.revision < ruleset.revision || expiry === "due") {
      const again = reevaluate(entry, ruleset, now);
      if (again?.changed) {
        await this.#revoke(
          [again],
          ruleset.revision,
          expiry === "due" ? (c) => expiryRecordId(ruleset.revision, c.entry) : undefined,
        );
      }
    }
    if (expiry === "arm" && entry.expiresAt !== null) await this.#expiries.arm(entry.expiresAt);
  }

  #verify(m: FeedMessage, ruleset: RulesetState) {
    return verifyDecisionBatch(m.data, m.header(BATCH_SIGNATURE_HEADER), {
      deployment: ruleset.deployment,
      workers: ruleset.workers,
      configured: this.#deps.workerKeys,
    });
  }

  /**
   * Re-evaluates the index for one rules revision, after the index has caught up with the
   * decision log as it was when the scan began: alone up to `scanPartSize` entries or when no
   * other worker waits for parts, else split into parts that every worker takes, acknowledged
   * only once every part is done.
   */
  async #scan(m: FeedMessage): Promise<void> {
    const { rules, log } = this.#deps;
    const started = performance.now();
    const startedAt = this.#deps.clock();
    await rules.waitForRevision(m.seq, RULES_WAIT_MS);
    const ruleset = rules.ruleset;
    if (ruleset.revision < m.seq || ruleset.broken !== null) {
      log.warn({ revision: m.seq }, "rules history broken: revision not re-evaluated");
      return;
    }
    log.info(
      { revision: m.seq, delivery: m.deliveries },
      "re-evaluating the active index for a rules revision",
    );
    await this.#caughtUp(m);
    // Parts, their done records and the report name the revision's own event, so none stored
    // before the admin signed it counts.
    const scan = ruleEventHash(new TextDecoder().decode(m.data));
    const index = this.#activeIndex();
    using view = await this.#view();
    const keys = view?.keys() ?? (await index.keys());
    const partSize = this.#deps.scanPartSize ?? DEFAULT_SCAN_PART_SIZE;
    const parts = this.#scanParts;
    if (keys.length <= partSize || parts === undefined || !(await this.#othersTakeParts(m.seq))) {
      const counts = await this.#reevaluateAll(view, keys, ruleset);
      this.#stats.lastScanMs = Math.round(performance.now() - started);
      await this.#scanComplete(m.seq, scan, counts, startedAt);
      return;
    }
    // Sorted, so that a host's entries fall into one part.
    keys.sort();
    const cut: string[][] = [];
    for (let at = 0; at < keys.length; at += partSize) cut.push(keys.slice(at, at + partSize));
    // A revision taken again (its taker died) publishes only the parts not done yet; those still
    // queued are not queued twice (de-duplicated on revision and part).
    const publishMissing = async (done: ReadonlyMap<number, unknown>) => {
      for (const [part, partKeys] of cut.entries()) {
        if (done.has(part)) continue;
        await parts.publish({ revision: m.seq, scan, part, parts: cut.length, keys: partKeys });
      }
    };
    await publishMissing(await parts.done(m.seq, scan));
    this.#stats.revisionsSplit++;
    log.info({ revision: m.seq, entries: keys.length, parts: cut.length }, "re-evaluation split into parts");
    let republishAt = Date.now() + PARTS_REPUBLISH_MS;
    for (;;) {
      this.#checkStopping();
      const finished = await parts.done(m.seq, scan);
      // A part acknowledged without being done (lost, refused) is queued again once the
      // de-duplication window has passed; until then publishing it again is a no-op.
      if (Date.now() > republishAt) {
        await publishMissing(finished);
        republishAt = Date.now() + PARTS_REPUBLISH_MS;
      }
      if (cut.every((_, part) => finished.has(part))) {
        const counts = { scanned: 0, changed: 0, overrides: 0 };
        for (const part of finished.values()) {
          counts.scanned += part.scanned;
          counts.changed += part.changed;
          counts.overrides += part.overrides;
        }
        this.#stats.lastScanMs = Math.round(performance.now() - started);
        await this.#scanComplete(m.seq, scan, counts, startedAt);
        return;
      }
      m.working();
      await delay(PARTS_POLL_MS);
    }
  }

  /**
   * The one place a revision's re-evaluation ends: every entry read, every override of every part
   * published. Called once per revision taken (again when a taker died and another redid it). It
   * writes the revision's scan report (`s.<revision>` in the active index), which `rules apply
   * --wait` waits for; a report that cannot be written fails the scan, so it is done again.
   */
  async #scanComplete(revision: number, event: string, counts: ScanCounts, startedAt: Date): Promise<void> {
    const { identity } = this.#deps;
    await this.#activeIndex().putScanReport({
      revision,
      deployment: this.#deps.rules.ruleset.deployment,
      event,
      entries: counts.scanned,
      changed: counts.changed,
      overrides: counts.overrides,
      startedAt: startedAt.toISOString(),
      finishedAt: this.#deps.clock().toISOString(),
      worker: { id: identity.id, publicKey: identity.publicKey },
    });
    this.#stats.revisionsScanned++;
    this.#stats.lastScanned = revision;
    this.#deps.log.info(
      {
        revision,
        entries: counts.scanned,
        changed: counts.changed,
        overrides: counts.overrides,
        ms: this.#stats.lastScanMs,
        ...(this.#mirror === undefined ? {} : { mirror: this.#mirror.stats }),
        ...this.#subjectFields(),
      },
      "revision re-evaluated against the active index",
    );
  }

  /** Does one part of a split re-evaluation, unless it is recorded done already, and records it done. */
  async #scanPart(m: FeedMessage): Promise<void> {
    const { rules, log } = this.#deps;
    const parsed = ScanPartV1.safeParse(jsonOrNull(m.data));
    const parts = this.#scanParts;
    if (!parsed.success || parts === undefined) {
      log.warn({ seq: m.seq }, "a scan part that is not one left undone");
      return;
    }
    const part = parsed.data;
    if (await parts.isDone(part.revision, part.scan, part.part)) return;
    log.info(
      { revision: part.revision, part: part.part, parts: part.parts, delivery: m.deliveries },
      "re-evaluating a part of a rules revision",
    );
    await rules.waitForRevision(part.revision, RULES_WAIT_MS);
    const ruleset = rules.ruleset;
    if (ruleset.revision < part.revision || ruleset.broken !== null) {
      // Not done, not acknowledged: another worker whose rules are at the revision takes it.
      throw new Error(`rules not at revision ${part.revision}`);
    }
    const started = performance.now();
    using view = await this.#view();
    const viewMs = Math.round(performance.now() - started);
    const counts = await this.#reevaluateAll(view, part.keys, ruleset);
    log.info(
      {
        revision: part.revision,
        part: part.part,
        ...counts,
        viewMs,
        ms: Math.round(performance.now() - started),
        ...this.#subjectFields(),
      },
      "part re-evaluated",
    );
    await parts.markDone({
      revision: part.revision,
      scan: part.scan,
      part: part.part,
      worker: this.#deps.identity.id,
      ...counts,
    });
    this.#stats.partsDone++;
  }

  /**
   * Re-evaluates the entries under `keys` (from `view`, or read from the server without one) under
   * `ruleset` and revokes every changed one, chunks written side by side, a few at a time, while
   * the reading goes on; the changed entries are written into the index once every override is
   * out. Throws (after every chunk started has settled) when any chunk could not be written: the
   * caller's message is then done again.
   */
  async #reevaluateAll(
    view: MirrorView | null,
    keys: readonly string[],
    ruleset: RulesetState,
  ): Promise<ScanCounts> {
    const now = this.#deps.clock();
    const runs = view !== null ? view.entryRunsOf(keys) : runsOfOne(this.#activeIndex().entriesOf(keys));
    let changed: Reevaluation[] = [];
    let changedBytes = 0;
    // The requests of the entries changed since the index was last written (held or in a chunk).
    let heldBytes = 0;
    const later: IndexUpdate[] = [];
    const scan: ScanContext = { view, later };
    const counts = { scanned: 0, changed: 0, overrides: 0 };
    const writing = new Set<Promise<void>>();
    // The first chunks are small, so that the first overrides are out while the later are read.
    let chunkSize = FIRST_CHUNK;
    let failure: unknown = null;
    const write = async (chunk: readonly Reevaluation[]) => {
      while (writing.size >= CHUNKS_IN_FLIGHT) await Promise.race(writing);
      if (failure !== null) throw failure;
      const done: Promise<void> = this.#revoke(chunk, ruleset.revision, undefined, scan).then(
        (published) => {
          writing.delete(done);
          counts.overrides += published;
        },
        (err: unknown) => {
          writing.delete(done);
          failure ??= err;
        },
      );
      writing.add(done);
    };
    try {
      for await (const run of runs) {
        this.#checkStopping();
        for (const entry of run) {
          counts.scanned++;
          const again = reevaluate(entry, ruleset, now);
          if (!again?.changed) continue;
          counts.changed++;
          changed.push(again);
          const bytes = requestJson(entry.request)?.length ?? 0;
          changedBytes += bytes;
          heldBytes += bytes;
          if (changed.length === chunkSize || changedBytes >= CHUNK_BYTES) {
            if (changed.length === chunkSize) chunkSize = Math.min(chunkSize * 2, CHUNK);
            await write(changed);
            changed = [];
            changedBytes = 0;
            this.#checkStopping();
          }
          if (later.length >= UPDATES_HELD || heldBytes >= UPDATES_HELD_BYTES) {
            heldBytes = 0;
            await this.#update(later.splice(0));
          }
        }
      }
      if (changed.length > 0) await write(changed);
    } finally {
      await Promise.all(writing);
    }
    if (failure !== null) throw failure;
    await this.#update(later);
    return counts;
  }

  /**
   * Whether another worker waits on the parts consumer now, beyond this one's own pull: a split
   * that no other worker shares only adds the parts' writes to the same work done one part after
   * the other. Unknown (the consumer unreadable) counts as no.
   */
  async #othersTakeParts(revision: number): Promise<boolean> {
    const waiting = await this.#partsFeed?.waitingPulls().catch(() => 0);
    const others = (waiting ?? 0) > 1;
    if (!others) {
      this.#deps.log.info(
        { revision, waitingPulls: waiting },
        "re-evaluation not split: no other worker takes parts",
      );
    }
    return others;
  }

  /**
   * The index as this worker's mirror holds it, complete as of now; null when there is no mirror
   * or it cannot say so (the re-evaluation then reads the index from the server).
   */
  async #view(): Promise<MirrorView | null> {
    if (this.#mirror === undefined) return null;
    const view = await this.#mirror.view().catch((err: unknown) => `unreadable (${String(err)})`);
    const refusal = typeof view === "string" ? view : null;
    if (refusal !== this.#mirrorRefusal) {
      this.#mirrorRefusal = refusal;
      if (refusal === null) this.#deps.log.info("re-evaluations read this worker's mirror of the index");
      else {
        this.#deps.log.warn(
          { reason: refusal, ...(this.#mirror.stats.unheard ? { detail: this.#mirror.stats.unheard } : {}) },
          "re-evaluations read the index from the server",
        );
      }
    }
    return typeof view === "string" ? null : view;
  }

  /**
   * Where the overrides went, for a re-evaluation's log line: per host, and how many went on the
   * shared topic instead (their host's key no subject token) since the previous such line.
   */
  #subjectFields(): Record<string, unknown> {
    const { changes } = this.#deps;
    return changes.perHost ? { changesPerHost: true, sharedFallback: changes.takeSharedFallback() } : {};
  }

  /**
   * Runs a feed's handler, and logs its failure (the first deliveries, then at every power of
   * two): the feed hands the message out again and holds the ones after it until it is done, so a
   * message that always fails would otherwise stop the fan-out with nothing said.
   */
  async #sayingWhenItFails(what: string, m: FeedMessage, handle: () => Promise<void>): Promise<void> {
    try {
      await handle();
    } catch (err) {
      const n = m.deliveries;
      const stopping = this.#projection?.stopping || this.#scans?.stopping;
      if (!stopping && (n <= 3 || (n & (n - 1)) === 0)) {
        this.#deps.log.warn(
          { seq: m.seq, deliveries: n, err: err instanceof Error ? err.message : String(err) },
          `${what} failed on stream message ${m.seq} (delivery ${n}); it is tried again, and the messages after it wait`,
        );
      }
      throw err;
    }
  }

  /** The index, open before either feed is. */
  #activeIndex(): ActiveIndex {
    if (this.#index === undefined) throw new Error("the active index is not open");
    return this.#index;
  }

  /** Throws when the worker is stopping, so that the revision goes to another worker at once. */
  #checkStopping(): void {
    if (this.#scans?.stopping || this.#partsFeed?.stopping || this.#suspended) {
      throw new Error("the worker is stopping");
    }
  }

  /**
   * Waits until the projection has acknowledged every answered request's batch there was at the
   * start: its ack floor past the stream's end as it was then, or nothing of its left
   * unacknowledged. The re-evaluations' batches are never delivered to a filtered consumer, so its
   * floor stays at its last request batch, below the stream's end when a re-evaluation came after
   * it (an unfiltered consumer skips them). Two small API calls, whatever the batches' size.
   */
  async #caughtUp(m: FeedMessage): Promise<void> {
    const feed = this.#projection;
    if (feed === undefined) throw new Error("the active index feed is not open");
    const target = await feed.lastSeq();
    const deadline = Date.now() + (this.#deps.catchUpTimeoutMs ?? 60_000);
    for (;;) {
      const { ackFloor, unacknowledged } = await feed.progress();
      if (ackFloor >= target || unacknowledged === 0) return;
      this.#checkStopping();
      if (Date.now() > deadline) {
        throw new Error(`the active index did not catch up with decision ${target} in time`);
      }
      m.working();
      await delay(20);
    }
  }

  /**
   * Writes changed entries into the index, each only over the entry it was re-evaluated from: an
   * entry written meanwhile (a newer request of the host, its prune) stays, and the projection
   * re-evaluates a newer request itself.
   */
  async #update(updates: readonly IndexUpdate[]): Promise<void> {
    const index = this.#activeIndex();
    for (let at = 0; at < updates.length; at += UPDATES_IN_FLIGHT) {
      const written = await Promise.all(
        updates.slice(at, at + UPDATES_IN_FLIGHT).map((u) => index.replace(u.entry, u.previous)),
      );
      for (const ok of written) if (!ok) this.#stats.changedMeanwhile++;
    }
  }

  /**
   * The signature of a framed batch of re-evaluation records, its Merkle root computed through this
   * worker's hashing thread (here when the revoker was never started).
   */
  async #batchSignature(framed: FramedDecisionBatch): Promise<string> {
    if (this.#hashing === undefined)
      return signBatch(
        framed.starts.map((start, i) => framed.lines.subarray(start, framed.ends[i])),
        this.#deps.signer,
      );
    const root = await this.#hashing.root(framed.lines, framed.starts, framed.ends);
    return signBatchRoot(framed.starts.length, root, this.#deps.signer);
  }

  /**
   * Records and publishes the changes of one chunk: the re-evaluation decisions (one signed batch)
   * and a revocation record each (one batch, de-duplicated on the `recordId`s it holds, by default
   * revision and entry, so a chunk done again alike records nothing twice), then the overrides,
   * then the index entries — or, in a scan, leaves those to it, to write once every override of
   * the scan is out. Entries of pruned hosts are left out; resolves to the number of overrides
   * published.
   */
  async #revoke(
    all: readonly Reevaluation[],
    revision: number,
    recordId: (c: Reevaluation) => string = (c) => `${revision}:${activeEntryKey(c.entry)}`,
    scan?: ScanContext,
  ): Promise<number> {
    const { decisions, revocations, nc, changes } = this.#deps;
    const ruleset = this.#deps.rules.ruleset;
    if (this.#deps.maySign !== undefined && !this.#deps.maySign(ruleset)) {
      throw new Error(
        `this worker's key ${this.#deps.identity.publicKey} is not enrolled at revision ${ruleset.revision}: its re-evaluations are left to enrolled workers`,
      );
    }
    const index = this.#activeIndex();
    // Pruned hosts get no overrides (an entry read just before its host was pruned).
    const hosts = scan?.view ? scan.view.hostRecord : indexHostRecords(index);
    const changed = await withoutPrunedHosts(hosts, all, (c) => c.entry);
    if (changed.length === 0) return 0;
    const now = this.#deps.clock();
    const at = now.toISOString();
    const encode = reevaluationRecordEncoder(
      { revision, deployment: ruleset.deployment, worker: this.#deps.identity },
      requestJson,
      maxDecisionRecordBytes(nc.info?.max_payload),
    );
    const records: PiecedDecision[] = changed.map((c) => {
      const decisionId = this.#deps.nextId();
      return { decisionId, ...encode(c, decisionId) };
    });
    // Framed first: a record that cannot be framed fails the chunk before anything is written.
    const framed = frameDecisionBatches(records, nc.info?.max_payload, inSharedMemory);
    // Both records before any override, written side by side: the revocations go out while the
    // decisions' batches are hashed.
    await Promise.all([
      revocations.appendBatch(
        changed.map((c) => ({
          record: revocationFor(c.entry, c.evaluation, revision, at),
          id: recordId(c),
          text: revocationText(c.entry, c.evaluation, revision, at),
        })),
      ),
      ...framed.map(async (batch) =>
        decisions.append({
          decisionIds: batch.decisionIds,
          lines: batch.lines,
          signature: await this.#batchSignature(batch),
          reevaluations: true,
        }),
      ),
    ]);
    for (const c of changed)
      nc.publish(changes.subjectFor(c.entry.host), overrideBytes(c.entry, c.evaluation));
    // A scan's index writes follow on this connection, after every override it sent (NATS keeps a
    // connection's order); alone, the override is out before the entry changes.
    if (scan === undefined) await nc.flush();
    this.#stats.overrides += changed.length;
    const updates = changed.map(
      (c): IndexUpdate => ({
        entry: { ...c.entry, permitted: c.evaluation.permitted, message: c.evaluation.message, revision },
        previous: c.entry,
      }),
    );
    if (scan === undefined) await this.#update(updates);
    else scan.later.push(...updates);
    return changed.length;
  }
}

/**
 * Does ahead of a scan what any re-evaluation of `entry` needs once: its request decoded, its
 * request's JSON and the parts of its records, override and revocation record serialized. For the index mirror's parsing ahead.
 */
export function prepareForReevaluation(entry: ActiveDecisionV1): void {
  if (entry.rejection !== null) return;
  const request = reevaluatedRequest(entry);
  if (request === null) return;
  prepareRecordParts(request, trustResultOf(entry.trust), requestJson);
  prepareChangeTexts(entry);
}

/**
 * The JSON of requests re-evaluated, by the request object (an entry keeps it across the scans
 * that change it): each revision's records take the bytes instead of serializing it again.
 */
const requestJsons = new WeakMap<object, Buffer>();

function requestJson(input: unknown): Buffer | null {
  const held = typeof input === "object" && input !== null ? input : null;
  if (held === null) return null;
  let json = requestJsons.get(held);
  if (json === undefined) {
    json = Buffer.from(JSON.stringify(held));
    requestJsons.set(held, json);
  }
  return json;
}

/**
 * What the chunks of one scan share: the index as the worker's mirror holds it (null: read from the
 * server), and the changed entries to write once every override is out.
 */
interface ScanContext {
  readonly view: MirrorView | null;
  readonly later: IndexUpdate[];
}

/** A changed entry to write into the index in place of the one it was re-evaluated from. */
interface IndexUpdate {
  readonly entry: ActiveDecisionV1;
  readonly previous: ActiveDecisionV1;
}

/** A batch message's buffer in memory the hashing thread reads as it is (posting it copies nothing). */
function inSharedMemory(size: number): Buffer {
  return Buffer.from(new SharedArrayBuffer(size));
}

function jsonOrNull(data: Uint8Array): unknown {
  try {
    return JSON.parse(Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString("utf8"));
  } catch {
    return null;
  }
}
