import {
  HOST_LIFECYCLE_EVENTS,
  type HostLifecycleEventName,
  type HostRecordV1,
  parseLatticeEvent,
  pingAnswerHost,
} from "@arbiter/protocol";
import { type ActiveIndex, connectionInboxPrefix } from "@arbiter/store";
import { createInbox, type Msg, type NatsConnection, type Subscription } from "@nats-io/nats-core";
import type { Logger } from "pino";
import { RateLimitedWarning } from "./rate-limited-warning.js";

/** How long a pruned host's tombstone is kept (decisions still in flight when it went). */
const TOMBSTONE_KEEP_MS = 60 * 60 * 1000;
/**
 * How long after a prune the sweep removes that host's entries again: a projection or scan that
 * read the host as live just before the tombstone was written may put an entry back after the
 * prune removed them (the puts and the tombstone are separate keys).
 */
const RECHECK_MS = 60_000;
/** Hosts whose last record write a worker remembers (forgotten all at once beyond). */
const MAX_REMEMBERED_HOSTS = 10_000;
/**
 * Events handled at once by one worker; beyond, new ones are dropped (a flood of forged events must
 * not pile up work on JetStream; a real stop missed that way is reaped by the sweep).
 */
const MAX_PENDING_EVENTS = 256;
/** Attempts at a compare-and-set of a host record before giving up on one event. */
const CAS_ATTEMPTS = 5;

/** What the host lifecycle needs from its worker. */
export interface HostLifecycleDeps {
  /** The connection for the lattice events and the pings. */
  readonly nc: NatsConnection;
  /** The lattices whose events this worker follows. */
  readonly lattices: readonly string[];
  /** Queue group of the event subscriptions, so each event is handled by one worker. */
  readonly queueGroup: string;
  /** Opens the active index (tried again on each event or sweep until it succeeds). */
  readonly openIndex: () => Promise<ActiveIndex>;
  /** A host unheard for longer than this (its heartbeat seen once) is pinged, and pruned if silent. */
  readonly hostTimeoutMs: number;
  /** How long a ping waits for the host's answer. */
  readonly pingWaitMs: number;
  readonly clock: () => Date;
  readonly log: Logger;
}

/** Counters of a {@link HostLifecycle}. */
export interface HostLifecycleStats {
  /** Lifecycle events handled (heartbeats, starts, stops). */
  readonly events: number;
  /** Messages on the events subjects that are not lattice events, ignored. */
  readonly badEvents: number;
  /** Events dropped because too many were being handled already. */
  readonly droppedEvents: number;
  /** `host_stopped` events of a host that still answered a ping: not pruned. */
  readonly refusedStops: number;
  /** Hosts pruned, on their stop or their silence. */
  readonly prunedHosts: number;
  /** Index entries removed with them. */
  readonly prunedEntries: number;
}

/** A decision's place, as the tombstone check needs it. */
export interface HostDecisionRef {
  readonly lattice: string;
  readonly host: string;
  readonly evaluatedAt: string;
}

/**
 * True when the host of `ref` was pruned at or after the decision was evaluated: the decision was
 * in flight when the host went, and must not put its entry back. One KV read. Throws
 * StoreUnavailableError.
 */
export async function isPrunedDecision(index: ActiveIndex, ref: HostDecisionRef): Promise<boolean> {
  return prunedBy((await index.getHost(ref.lattice, ref.host))?.record ?? null, ref.evaluatedAt);
}

/**
 * The items of `list` whose decisions' hosts are not pruned after them (see
 * {@link isPrunedDecision}), reading each distinct host once, side by side.
 */
export async function withoutPrunedHosts<T>(
  hosts: HostRecords,
  list: readonly T[],
  refOf: (item: T) => HostDecisionRef,
): Promise<T[]> {
  // By lattice, then host: no key text is built per item (a scan's chunk is mostly a few hosts).
  const records = new Map<string, Map<string, HostRecordV1 | null>>();
  const reads: Promise<void>[] = [];
  let stopped = false;
  const note = (ofLattice: Map<string, HostRecordV1 | null>, host: string, record: HostRecordV1 | null) => {
    ofLattice.set(host, record);
    if (record?.stoppedAt != null) stopped = true;
  };
  for (const item of list) {
    const { lattice, host } = refOf(item);
    let ofLattice = records.get(lattice);
    if (ofLattice === undefined) {
      ofLattice = new Map();
      records.set(lattice, ofLattice);
    }
    if (ofLattice.has(host)) continue;
    const read = hosts(lattice, host);
    if (read instanceof Promise) {
      ofLattice.set(host, null);
      const into = ofLattice;
      reads.push(read.then((record) => note(into, host, record)));
    } else note(ofLattice, host, read);
  }
  await Promise.all(reads);
  if (!stopped) return [...list];
  return list.filter((item) => {
    const ref = refOf(item);
    return !prunedBy(records.get(ref.lattice)?.get(ref.host) ?? null, ref.evaluatedAt);
  });
}

/** Where {@link withoutPrunedHosts} reads host records: the index, or a worker's mirror of it. */
export type HostRecords = (
  lattice: string,
  host: string,
) => Promise<HostRecordV1 | null> | HostRecordV1 | null;

/** The host records of `index`, read from the server. */
export function indexHostRecords(index: ActiveIndex): HostRecords {
  return async (lattice, host) => (await index.getHost(lattice, host))?.record ?? null;
}

async function hasEntries(index: ActiveIndex, lattice: string, host: string): Promise<boolean> {
  for await (const _ of index.entries({ lattice, host })) return true;
  return false;
}

function prunedBy(record: HostRecordV1 | null, evaluatedAt: string): boolean {
  return record?.stoppedAt != null && Date.parse(evaluatedAt) <= Date.parse(record.stoppedAt);
}

/**
 * Follows the lifecycle events of the lattices a worker serves (in the workers' queue group, so
 * each event is handled once) and prunes the active index: a host's entries leave it on its
 * `host_stopped`, and when its heartbeat, once seen, has been missing for `hostTimeoutMs`. Lattice
 * events are not signed, so neither is believed alone: the host is pinged first
 * (`wasmbus.ctl.v1.{lattice}.host.ping`) and pruned only when it does not answer within
 * `pingWaitMs`. Host records live in the active bucket, so any worker can reap, after a restart
 * too; every write to them is a compare-and-set, so several workers reaping the same host is safe.
 */
export class HostLifecycle {
  readonly #deps: HostLifecycleDeps;
  readonly #subscriptions: Subscription[] = [];
  readonly #pending = new Set<Promise<void>>();
  readonly #badEvents: RateLimitedWarning;
  readonly #refusedStops: RateLimitedWarning;
  readonly #droppedEvents: RateLimitedWarning;
  /** When this worker last wrote each host's record (see `#seen`). */
  readonly #lastWritten = new Map<string, number>();
  /** Per lattice: the hosts the next ping asks about, and its outcome. */
  readonly #nextPing = new Map<string, { wanted: Set<string>; answered: Promise<Set<string> | null> }>();
  /** Per lattice: the ping out now (settled when it ends). */
  readonly #pingOut = new Map<string, Promise<void>>();
  readonly #lostPings: RateLimitedWarning;
  /** Times the connection broke (or the server cut it off) so far: a ping out meanwhile may have lost answers. */
  #breaks = 0;
  #index: ActiveIndex | undefined;
  #timer: NodeJS.Timeout | undefined;
  #sweeping: Promise<void> | null = null;
  #stopped = false;
  #stats = { events: 0, badEvents: 0, droppedEvents: 0, refusedStops: 0, prunedHosts: 0, prunedEntries: 0 };

  constructor(deps: HostLifecycleDeps) {
    this.#deps = deps;
    this.#badEvents = new RateLimitedWarning(
      deps.log,
      "messages on the lattice event subjects that are not lattice events; ignored",
      "ignored",
    );
    this.#refusedStops = new RateLimitedWarning(
      deps.log,
      "host_stopped events of hosts that still answer pings (forged, or the host came back); not pruned",
      "refused",
    );
    this.#droppedEvents = new RateLimitedWarning(
      deps.log,
      "lattice events dropped: too many being handled at once",
      "dropped",
    );
    this.#lostPings = new RateLimitedWarning(
      deps.log,
      "pings out while the connection broke (answers may be lost, as when hosts' answers make the server cut it off as a slow consumer); no host pruned on them",
      "pings",
    );
  }

  /** A snapshot of the counters. */
  get stats(): HostLifecycleStats {
    return { ...this.#stats };
  }

  /** How often the sweep looks for silent hosts: a seventh of the timeout, between 0.1 s and 10 s. */
  get sweepIntervalMs(): number {
    return Math.min(10_000, Math.max(100, Math.floor(this.#deps.hostTimeoutMs / 7)));
  }

  /** Subscribes to the lifecycle events of every lattice and starts the sweep. Never throws. */
  start(): void {
    const { nc, lattices, queueGroup } = this.#deps;
    for (const lattice of lattices) {
      const subjects: [string, HostLifecycleEventName | null][] = [
        ...HOST_LIFECYCLE_EVENTS.map((name): [string, HostLifecycleEventName] => [
          `wasmbus.evt.${lattice}.${name}`,
          name,
        ]),
        // 0.82 hosts also publish every event on the lattice's own subject.
        [`wasmbus.evt.${lattice}`, null],
      ];
      for (const [subject, expected] of subjects) {
        this.#subscriptions.push(
          nc.subscribe(subject, {
            queue: queueGroup,
            callback: (err, msg) => {
              if (err !== null) return;
              if (this.#pending.size >= MAX_PENDING_EVENTS) {
                this.#stats.droppedEvents++;
                this.#droppedEvents.count();
                return;
              }
              this.#track(this.#onEvent(lattice, expected, msg));
            },
          }),
        );
      }
    }
    void this.#countBreaks();
    this.#schedule();
  }

  async #countBreaks(): Promise<void> {
    try {
      for await (const status of this.#deps.nc.status()) {
        if (status.type === "disconnect" || status.type === "reconnect") this.#breaks++;
      }
    } catch {
      // The connection closed: nothing is pinged on it any more.
    }
  }

  /** Leaves the events subjects and waits for the events and the sweep being handled. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    for (const subscription of this.#subscriptions) subscription.unsubscribe();
    await Promise.allSettled([...this.#pending, this.#sweeping]);
    this.#badEvents.flush();
    this.#refusedStops.flush();
    this.#droppedEvents.flush();
    this.#lostPings.flush();
  }

  /** Runs one sweep now (tests, and the timer). */
  sweep(): Promise<void> {
    this.#sweeping ??= this.#sweep().finally(() => {
      this.#sweeping = null;
    });
    return this.#sweeping;
  }

  #schedule(): void {
    if (this.#stopped) return;
    this.#timer = setTimeout(() => {
      void this.sweep().finally(() => this.#schedule());
    }, this.sweepIntervalMs);
    this.#timer.unref();
  }

  #track(work: Promise<void>): void {
    this.#pending.add(work);
    void work.finally(() => this.#pending.delete(work));
  }

  async #onEvent(lattice: string, expected: HostLifecycleEventName | null, msg: Msg): Promise<void> {
    const parsed = parseLatticeEvent(msg.data, expected);
    if (!parsed.ok) {
      this.#stats.badEvents++;
      this.#badEvents.count(1, { subject: msg.subject, reason: parsed.reason });
      return;
    }
    if (parsed.event === null) return;
    this.#stats.events++;
    const { name, host, uptimeSeconds } = parsed.event;
    try {
      if (name === "host_stopped") await this.#onStopped(lattice, host);
      else await this.#seen(lattice, host, false, uptimeSeconds);
    } catch (err) {
      this.#deps.log.warn({ err, lattice, host, event: name }, "a lattice event could not be handled");
    }
  }

  async #activeIndex(): Promise<ActiveIndex> {
    this.#index ??= await this.#deps.openIndex();
    return this.#index;
  }

  /**
   * Notes that the host was heard (heartbeat, start, ping answer) now. A host with no record and
   * no entries is not recorded (nothing to prune; events are anyone's to publish, so keys made up
   * by the thousand must not fill the bucket), and this worker writes a host's record at most
   * once per quarter of the timeout.
   */
  async #seen(lattice: string, host: string, force = false, uptimeSeconds?: number): Promise<void> {
    const key = JSON.stringify([lattice, host]);
    const nowMs = this.#deps.clock().getTime();
    const last = this.#lastWritten.get(key);
    if (!force && last !== undefined && nowMs - last < this.#deps.hostTimeoutMs / 4) return;
    const index = await this.#activeIndex();
    const now = new Date(nowMs).toISOString();
    for (let attempt = 0; attempt < CAS_ATTEMPTS; attempt++) {
      const stored = await index.getHost(lattice, host);
      if (stored === null && !(await hasEntries(index, lattice, host))) return;
      if (attempt === 0 && stored !== null) this.#warnIfBackUnrestarted(stored.record, nowMs, uptimeSeconds);
      const record: HostRecordV1 = {
        lattice,
        host,
        lastSeenAt: now,
        stoppedAt: stored?.record.stoppedAt ?? null,
        pruned: stored?.record.pruned ?? false,
      };
      if (await index.putHost(record, stored?.revision ?? null)) {
        if (this.#lastWritten.size >= MAX_REMEMBERED_HOSTS) this.#lastWritten.clear();
        this.#lastWritten.set(key, nowMs);
        return;
      }
    }
  }

  /**
   * A host reaped while it was only cut off keeps its cache when it comes back, and its entries are
   * gone: nothing overrides what it cached any more. Its heartbeat's uptime tells (it has run since
   * before it was pruned); only a restart of the host clears that cache.
   */
  #warnIfBackUnrestarted(record: HostRecordV1, nowMs: number, uptimeSeconds: number | undefined): void {
    if (record.stoppedAt === null || uptimeSeconds === undefined) return;
    const stoppedMs = Date.parse(record.stoppedAt);
    const lastSeen = record.lastSeenAt === null ? null : Date.parse(record.lastSeenAt);
    if (lastSeen !== null && lastSeen > stoppedMs) return;
    if (uptimeSeconds * 1000 > nowMs - stoppedMs) {
      this.#deps.log.error(
        { lattice: record.lattice, host: record.host, prunedAt: record.stoppedAt, uptimeSeconds },
        "a host pruned for its missing heartbeat is back without having restarted: what it cached before is no longer overridden; restart that host",
      );
    }
  }

  /**
   * A stop of a host Arbiter knows nothing of (no record, no entries) prunes nothing and writes
   * nothing, so stops made up for any number of keys neither ping the lattice nor fill the bucket.
   */
  async #onStopped(lattice: string, host: string): Promise<void> {
    const index = await this.#activeIndex();
    if ((await index.getHost(lattice, host)) === null && !(await hasEntries(index, lattice, host))) return;
    const answering = await this.#answering(lattice, [host]);
    if (answering === null || answering.has(host)) {
      this.#stats.refusedStops++;
      this.#refusedStops.count(1, { lattice, host });
      return;
    }
    await this.#prune(lattice, host, "host_stopped", () => true);
  }

  /**
   * Which of `hosts` answer a ping in `lattice` within the wait, or null when that cannot be told
   * (the connection broke while the ping was out, so answers may be lost: no host is silent on
   * that). Every host answers every ping,
   * so pings are not sent once per event: hosts asked about while a ping is out wait for the next
   * one, which asks about all of them (an event flood makes at most one ping per wait).
   */
  #answering(lattice: string, hosts: readonly string[]): Promise<Set<string> | null> {
    let batch = this.#nextPing.get(lattice);
    if (batch === undefined) {
      const wanted = new Set<string>();
      const previous = this.#pingOut.get(lattice) ?? Promise.resolve();
      const answered = previous.then(() => {
        this.#nextPing.delete(lattice);
        return this.#ping(lattice, wanted);
      });
      batch = { wanted, answered };
      this.#nextPing.set(lattice, batch);
      this.#pingOut.set(
        lattice,
        answered.then(
          () => {},
          () => {},
        ),
      );
    }
    for (const host of hosts) batch.wanted.add(host);
    return batch.answered;
  }

  async #ping(lattice: string, wanted: ReadonlySet<string>): Promise<Set<string> | null> {
    const { nc, pingWaitMs } = this.#deps;
    const answered = new Set<string>();
    const breaks = this.#breaks;
    const inbox = createInbox(connectionInboxPrefix(nc));
    let done: () => void = () => {};
    const all = new Promise<void>((resolve) => {
      done = resolve;
    });
    let subscription: Subscription | undefined;
    let timer: NodeJS.Timeout | undefined;
    try {
      subscription = nc.subscribe(inbox, {
        callback: (err, reply) => {
          if (err !== null) return;
          const id = pingAnswerHost(reply.data);
          if (id !== null && wanted.has(id)) answered.add(id);
          if (answered.size === wanted.size) done();
        },
      });
      nc.publish(`wasmbus.ctl.v1.${lattice}.host.ping`, "", { reply: inbox });
      await Promise.race([all, new Promise<void>((resolve) => (timer = setTimeout(resolve, pingWaitMs)))]);
      // The wait is the server's, not this process's: a round trip now delivers, ahead of its
      // answer, every answer the server had for this connection. A worker slow to read (busy, or
      // behind a flood) would otherwise take a live host's answer, read late, for its silence.
      if (answered.size < wanted.size) await nc.flush();
    } catch {
      if (answered.size < wanted.size) return this.#lost(lattice, wanted);
    } finally {
      clearTimeout(timer);
      subscription?.unsubscribe();
    }
    if (this.#breaks !== breaks && answered.size < wanted.size) return this.#lost(lattice, wanted);
    return answered;
  }

  #lost(lattice: string, wanted: ReadonlySet<string>): null {
    this.#lostPings.count(1, { lattice, hosts: [...wanted].slice(0, 8) });
    return null;
  }

  /**
   * Prunes a host: a tombstone first (so no decision evaluated before now is indexed again),
   * then its entries, then the record marked pruned. `stillGone` is checked against the record
   * read for the tombstone (a heartbeat may have come in meanwhile).
   */
  async #prune(
    lattice: string,
    host: string,
    reason: string,
    stillGone: (record: HostRecordV1 | null) => boolean,
  ): Promise<void> {
    const index = await this.#activeIndex();
    const stoppedAt = this.#deps.clock().toISOString();
    let written = false;
    for (let attempt = 0; attempt < CAS_ATTEMPTS && !written; attempt++) {
      const stored = await index.getHost(lattice, host);
      if (!stillGone(stored?.record ?? null)) return;
      const record: HostRecordV1 = {
        lattice,
        host,
        lastSeenAt: stored?.record.lastSeenAt ?? null,
        stoppedAt,
        pruned: false,
      };
      written = await index.putHost(record, stored?.revision ?? null);
    }
    if (!written) return;
    const removed = await this.#removeEntries(index, lattice, host, stoppedAt);
    await this.#markPruned(index, lattice, host, stoppedAt);
    this.#stats.prunedHosts++;
    this.#stats.prunedEntries += removed;
    this.#deps.log.info({ lattice, host, reason, entries: removed }, "host pruned from the active index");
  }

  /** Removes the host's entries decided at or before `stoppedAt`; how many. */
  async #removeEntries(
    index: ActiveIndex,
    lattice: string,
    host: string,
    stoppedAt: string,
  ): Promise<number> {
    const doomed = [];
    for await (const entry of index.entries({ lattice, host })) {
      if (Date.parse(entry.evaluatedAt) <= Date.parse(stoppedAt)) doomed.push(entry);
    }
    for (let at = 0; at < doomed.length; at += 64) {
      await Promise.all(doomed.slice(at, at + 64).map((entry) => index.delete(entry)));
    }
    return doomed.length;
  }

  async #markPruned(index: ActiveIndex, lattice: string, host: string, stoppedAt: string): Promise<void> {
    for (let attempt = 0; attempt < CAS_ATTEMPTS; attempt++) {
      const stored = await index.getHost(lattice, host);
      if (stored === null || stored.record.stoppedAt !== stoppedAt || stored.record.pruned) return;
      if (await index.putHost({ ...stored.record, pruned: true }, stored.revision)) return;
    }
  }

  async #sweep(): Promise<void> {
    try {
      await this.#sweepOnce();
    } catch (err) {
      this.#deps.log.warn({ err }, "the host lifecycle sweep failed; trying again at the next one");
    }
  }

  async #sweepOnce(): Promise<void> {
    const index = await this.#activeIndex();
    const now = this.#deps.clock().getTime();
    const timeout = this.#deps.hostTimeoutMs;
    const served = new Set(this.#deps.lattices);
    const silent = new Map<string, string[]>();
    for await (const { record, revision } of index.hosts()) {
      if (this.#stopped) return;
      if (!served.has(record.lattice)) continue;
      const stoppedAt = record.stoppedAt === null ? null : Date.parse(record.stoppedAt);
      const lastSeen = record.lastSeenAt === null ? null : Date.parse(record.lastSeenAt);
      const alive = lastSeen !== null && (stoppedAt === null || lastSeen > stoppedAt);
      if (alive) {
        if (now - lastSeen > timeout) {
          const list = silent.get(record.lattice) ?? [];
          list.push(record.host);
          silent.set(record.lattice, list);
        }
        continue;
      }
      if (stoppedAt === null || record.stoppedAt === null) continue;
      if (!record.pruned || now - stoppedAt < RECHECK_MS) {
        // A prune that did not finish (its worker died), or one whose entries a put in flight
        // may have brought back.
        const removed = await this.#removeEntries(index, record.lattice, record.host, record.stoppedAt);
        this.#stats.prunedEntries += removed;
        if (!record.pruned) await this.#markPruned(index, record.lattice, record.host, record.stoppedAt);
      } else if (now - stoppedAt > TOMBSTONE_KEEP_MS) {
        await index.deleteHost(record.lattice, record.host, revision);
      }
    }
    for (const [lattice, hosts] of silent) {
      const answering = await this.#answering(lattice, hosts);
      // Asked again at the next sweep.
      if (answering === null) continue;
      for (const host of hosts) {
        if (this.#stopped) return;
        if (answering.has(host)) {
          await this.#seen(lattice, host, true);
          continue;
        }
        await this.#prune(lattice, host, "heartbeat missing", (record) => {
          const seen = record?.lastSeenAt == null ? null : Date.parse(record.lastSeenAt);
          return seen !== null && this.#deps.clock().getTime() - seen > timeout;
        });
      }
    }
  }
}
