import { performance } from "node:perf_hooks";
import { setTimeout as delay } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { type NatsServerProcess, startNatsServer } from "@arbiter/embedded-nats";
import { createHostPolicyClient, type HostPolicyClient } from "@arbiter/host";
import { ArbiterError, DEFAULT_CHANGES_TOPIC, ErrorCode, resourceNames } from "@arbiter/protocol";
import { parseRulesDocument } from "@arbiter/rules";
import { createRulesAdmin, openJetStreamStore } from "@arbiter/store";
import { createSigner, generateKey } from "@arbiter/trust";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import type { Logger } from "pino";
import { askWorkers } from "../worker-status.js";
import { type BenchChild, cpuProfArgs, spawnNode } from "./child-process.js";
import { type AloneRun, aloneRun, type ObserverPhase } from "./convergence-alone.js";
import { type CpuSample, cpuMsUsed, sampleCpu } from "./process-cpu.js";

/**
 * How the hosts of a run hear overrides: all on the one changes topic (wasmCloud's default, every
 * host receiving every override), or each on `<changes topic>.<its host key>` with the workers
 * publishing per host (`arbiter worker --changes-per-host`).
 */
export type ChangesMode = "shared" | "per-host";

/** Settings of {@link runConvergenceBench}. */
export interface ConvergenceBenchOptions {
  /** Cached decisions in all, spread evenly over the hosts (half of each host's flip). */
  readonly decisions: number;
  readonly hosts: number;
  /** One measured run per entry: that many workers sharing the re-evaluation. */
  readonly workers: readonly number[];
  /** And for each of those, one run per way the hosts hear overrides. */
  readonly changes: readonly ChangesMode[];
  /** Longest wait for any step (index catch-up, every host converged). */
  readonly timeoutMs: number;
  /** The environment of the worker processes (without settings that would move them elsewhere). */
  readonly childEnv: NodeJS.ProcessEnv;
  /** The `arbiter` entry point the workers run. */
  readonly cliMain: string;
  /** Run each worker under `node --cpu-prof`, writing its profile into this folder. */
  readonly workerCpuProfDir?: string;
  readonly signal: AbortSignal;
  readonly log: Logger;
}

/** Convergence of one way of delivering the overrides, over every host. */
export interface ConvergenceFigures {
  /** Overrides that changed a cache entry, over all hosts. */
  readonly overridesApplied: number;
  /** Per host, from the start (the rules event's ack, or the baseline's first publish) to its last cache update. */
  readonly perHostMs: { readonly p50: number; readonly max: number; readonly min: number };
  /** Overrides per second: every override of the run over the max above. */
  readonly overridesPerSecond: number;
  /** Messages delivered per second to the hosts (on the shared topic each host receives every override). */
  readonly deliveriesPerSecond: number;
  /**
   * CPU used meanwhile (Linux; null elsewhere), in ms: the workers (the re-evaluation; nothing for
   * the baseline), nats-server, and this process (the hosts, or the bare publisher and the hosts).
   * Less moved by other load on a shared machine than the times.
   */
  readonly cpuMs: {
    readonly workers: number | null;
    readonly natsServer: number | null;
    readonly hosts: number | null;
  };
}

/**
 * When the last override was out, as one observer subscribed to the changes topic in a process of
 * its own saw it: what Arbiter itself takes, without the simulated hosts' cost (which the per-host
 * figures include, as they share the bench process). On a machine of few cores the observer still
 * shares them with the hosts and the workers.
 */
export interface LastPublishedFigures {
  /** From the rules event's ack to the arrival of the last expected override. */
  readonly arbiterMs: number;
  /** From the rules event's ack to the arrival of the first override: before it, the scan's start. */
  readonly arbiterFirstMs: number;
  /** From the baseline's first bare publish to the arrival of the last one. */
  readonly baselineMs: number;
  /** Overrides per second by the observer's times: every override over the time above. */
  readonly arbiterOverridesPerSecond: number;
  readonly baselineOverridesPerSecond: number;
  /** Messages the observer counted on the changes topic in each phase. */
  readonly observed: { readonly arbiter: number; readonly baseline: number };
}

/** One measured run: Arbiter's re-evaluation beside the bare NATS floor, same hosts, same server. */
export interface ConvergenceRun {
  readonly workers: number;
  readonly changes: ChangesMode;
  readonly hosts: number;
  readonly decisions: number;
  /** Entries that flip under the new rules (known by construction: half of each host's). */
  readonly flipped: number;
  readonly revision: number;
  /** Time to get every decision cached and indexed (not measured against anything). */
  readonly setupMs: number;
  /** From the rules event's ack to each host's last cache update. */
  readonly arbiter: ConvergenceFigures;
  /** The same overrides published bare from one connection: the NATS floor. */
  readonly baseline: ConvergenceFigures;
  /** arbiter max / baseline max. */
  readonly ratioMax: number;
  /** The same two phases timed to the last override seen by one observer in its own process. */
  readonly lastPublished: LastPublishedFigures;
  /** Checked after the run: every flipped entry holds the new outcome, every other one is untouched. */
  readonly check: {
    readonly flippedWithNewOutcome: number;
    readonly othersUntouched: number;
    readonly ok: true;
  };
  /** What each worker says it did (from `arbiter.workers.status`), by worker id, before `alone`. */
  readonly workerStats: Readonly<Record<string, Readonly<Record<string, number>>>>;
  /**
   * After the above, a second rules change (the flipped entries' message changes) with the hosts
   * no longer hearing the changes topic: Arbiter alone, beside the same overrides published bare.
   */
  readonly alone: AloneRun;
}

/** The convergence part of the benchmark report. */
export interface ConvergenceReport {
  readonly target: { readonly maxMs: number; readonly overridesPerSecond: number };
  readonly runs: readonly ConvergenceRun[];
}

/** The target: 10,000 decisions on 100 hosts, half flipping, converge within 1 s at 20,000 overrides/s. */
export const CONVERGENCE_TARGET = { maxMs: 1000, overridesPerSecond: 20_000 } as const;

const FLIP_PREFIX = "bench-flip-";
const KEEP_PREFIX = "bench-keep-";
const REVOKED_MESSAGE = "revoked by the convergence benchmark";
const ALONE_MESSAGE = "revoked again, no host listening";
const BASE_RULES = parseRulesDocument(JSON.stringify({ version: 1, default: "allow", rules: [] }));
const FLIP_RULES = parseRulesDocument(
  JSON.stringify({
    version: 1,
    default: "allow",
    rules: [
      {
        id: "bench-revoke-half",
        effect: "deny",
        when: `subject.id.startsWith("${FLIP_PREFIX}")`,
        message: REVOKED_MESSAGE,
      },
    ],
  }),
);
const ALONE_RULES = parseRulesDocument(
  JSON.stringify({
    version: 1,
    default: "allow",
    rules: [
      {
        id: "bench-revoke-half-alone",
        effect: "deny",
        when: `subject.id.startsWith("${FLIP_PREFIX}")`,
        message: ALONE_MESSAGE,
      },
    ],
  }),
);
const POLL_MS = 20;
const CHANGES_OBSERVER = fileURLToPath(new URL("./changes-observer.js", import.meta.url));
const OBSERVER_CONTROL = "arbiter.bench.convergence.observer";

/**
 * Measures revocation convergence: `hosts` reference host clients cache `decisions` answers
 * through real workers, a rules change flips half of them, and each host's last cache update is
 * timed from the rules event's ack; beside it, the same overrides published bare from one
 * connection. Throws when any flipped entry lacks its new outcome or any other entry changed.
 * Stops every process it started before it returns or throws.
 */
export async function runConvergenceBench(options: ConvergenceBenchOptions): Promise<ConvergenceReport> {
  const runs: ConvergenceRun[] = [];
  for (const workers of options.workers) {
    for (const changes of options.changes) runs.push(await convergenceRun(options, workers, changes));
  }
  return { target: CONVERGENCE_TARGET, runs };
}

interface BenchHost {
  readonly client: HostPolicyClient;
  /** Where this host hears overrides. */
  readonly changesTopic: string;
  readonly nc: NatsConnection;
  /** Request id → whether its entry flips. */
  readonly ids: Map<string, boolean>;
  /** Flipped ids whose override this host applied, in the current phase. */
  seen: Set<string>;
  /** When the last one was applied (performance.now()), in the current phase. */
  convergedAt: number | null;
  /** Overrides applied to entries that must not change, in the current phase. */
  wrongOverrides: number;
}

async function convergenceRun(
  options: ConvergenceBenchOptions,
  workerCount: number,
  changes: ChangesMode,
): Promise<ConvergenceRun> {
  const { log, signal } = options;
  const perHost = Math.floor(options.decisions / options.hosts);
  const flipPerHost = Math.floor(perHost / 2);
  if (perHost < 2) {
    throw new ArbiterError(
      ErrorCode.InvalidConfig,
      `--convergence-decisions ${options.decisions} over --convergence-hosts ${options.hosts}: expected at least 2 decisions a host`,
    );
  }
  const cleanups: Array<() => Promise<unknown>> = [];
  const interrupted = () => {
    if (signal.aborted) throw new ArbiterError(ErrorCode.Internal, "benchmark interrupted");
  };
  const deadline = (what: string) => {
    const until = Date.now() + options.timeoutMs;
    return () => {
      interrupted();
      if (Date.now() > until) {
        throw new ArbiterError(
          ErrorCode.Internal,
          `convergence bench: ${what} within ${options.timeoutMs} ms`,
        );
      }
    };
  };
  try {
    log.info(
      { workers: workerCount, changes },
      "convergence: starting nats-server (JetStream, temporary store)",
    );
    const nats: NatsServerProcess = await startNatsServer();
    cleanups.push(() => nats.stop());
    const nc = await connect({ servers: nats.url, name: "arbiter-bench-convergence" });
    cleanups.push(() => nc.close());
    const store = await openJetStreamStore(nc, { replicas: 1 });
    const admin = createSigner(generateKey("O").seed, "O");
    const rulesAdmin = createRulesAdmin({ store, signer: admin });
    await rulesAdmin.apply(BASE_RULES, { reason: "arbiter bench: convergence" });

    const workers: BenchChild[] = [];
    for (let i = 0; i < workerCount; i++) {
      const key = generateKey("N");
      const name = `bench-converge-${i + 1}`;
      await rulesAdmin.enrollWorker(key.publicKey, { name, reason: "arbiter bench: convergence" });
      const profiling = cpuProfArgs(options.workerCpuProfDir, `${name}-of-${workerCount}.cpuprofile`);
      const worker = spawnNode(
        `convergence worker ${i + 1}`,
        [
          ...profiling,
          options.cliMain,
          "worker",
          "--servers",
          nats.url,
          "--name",
          name,
          "--admin-keys",
          admin.publicKey,
          ...(changes === "per-host" ? ["--changes-per-host"] : []),
        ],
        { ...options.childEnv, ARBITER_WORKER_SEED: key.seed },
      );
      workers.push(worker);
      cleanups.push(() => worker.stop());
    }

    const observer = spawnNode(
      "changes observer",
      [
        CHANGES_OBSERVER,
        "--servers",
        nats.url,
        "--control",
        OBSERVER_CONTROL,
        "--topic",
        changes === "per-host" ? `${DEFAULT_CHANGES_TOPIC}.*` : DEFAULT_CHANGES_TOPIC,
      ],
      options.childEnv,
    );
    cleanups.push(() => observer.stop());
    await observer.printed("ready");
    const observe = async (body: {
      expect?: number;
      check?: boolean;
      outcomes?: [string, boolean, string][];
    }): Promise<ObserverPhase> => {
      const reply = await nc.request(OBSERVER_CONTROL, JSON.stringify(body), { timeout: 10_000 });
      return reply.json<ObserverPhase>();
    };

    const setupStart = performance.now();
    const hosts: BenchHost[] = [];
    for (let h = 0; h < options.hosts; h++) {
      const hostNc = await connect({ servers: nats.url, name: `bench-host-${h}` });
      cleanups.push(() => hostNc.close());
      const publicKey = generateKey("N").publicKey;
      const changesTopic =
        changes === "per-host" ? `${DEFAULT_CHANGES_TOPIC}.${publicKey}` : DEFAULT_CHANGES_TOPIC;
      const client = createHostPolicyClient({
        nc: hostNc,
        timeoutMs: 10_000,
        changesTopic,
        host: { publicKey, lattice: "default", labels: {} },
      });
      await client.start();
      const host: BenchHost = {
        client,
        changesTopic,
        nc: hostNc,
        ids: new Map(),
        seen: new Set(),
        convergedAt: null,
        wrongOverrides: 0,
      };
      client.onOverride((event) => {
        if (event.outcome !== "applied") return;
        const flips = host.ids.get(event.requestId);
        if (flips !== true) {
          host.wrongOverrides++;
          return;
        }
        host.seen.add(event.requestId);
        if (host.seen.size === flipPerHost) host.convergedAt = performance.now();
      });
      hosts.push(host);
    }
    // The first answer also says the workers are up (a host retries a failed request itself).
    const ready = deadline("no worker answered");
    for (;;) {
      const answer = await hosts[0]!.client.evaluateStartComponent(component(`${KEEP_PREFIX}probe`));
      if (answer.failure === undefined) break;
      for (const w of workers) if (w.exit) throw workerExited(w);
      ready();
      await delay(50);
    }
    await Promise.all(
      hosts.map(async (host) => {
        for (let i = 0; i < perHost; i++) {
          const flips = i < flipPerHost;
          const answer = await host.client.evaluateStartComponent(
            component(`${flips ? FLIP_PREFIX : KEEP_PREFIX}${i}`),
          );
          if (answer.failure !== undefined || !answer.permitted || answer.requestId === null) {
            throw new ArbiterError(
              ErrorCode.Internal,
              `convergence bench: a setup request was not permitted (${answer.failure ?? answer.message})`,
            );
          }
          host.ids.set(answer.requestId, flips);
        }
      }),
    );
    await untilIndexed(nc, deadline("the active index did not catch up"));
    const setupMs = performance.now() - setupStart;
    interrupted();
    const before = hosts.map((h) => h.client.cacheEntries());

    // The floor: the same number of overrides, one per flipped entry, published from one
    // connection with the outcome each entry already holds, so that the caches stay as they are.
    log.info("convergence: measuring the baseline (bare overrides from one connection)");
    const bareNc = await connect({ servers: nats.url, name: "arbiter-bench-bare-overrides" });
    cleanups.push(() => bareNc.close());
    const bare: { subject: string; payload: Uint8Array }[] = [];
    const encoder = new TextEncoder();
    for (const [h, host] of hosts.entries()) {
      const cache = before[h]!;
      const keys = host.client.requestKeys();
      for (const [id, flips] of host.ids) {
        if (!flips) continue;
        const entry = cache.get(keys.get(id) ?? "");
        if (entry === undefined)
          throw new ArbiterError(ErrorCode.Internal, "convergence bench: an entry is not cached");
        bare.push({
          subject: host.changesTopic,
          payload: encoder.encode(
            JSON.stringify({
              requestId: id,
              request_id: id,
              permitted: entry.permitted,
              message: entry.message ?? "",
            }),
          ),
        });
      }
    }
    const pids = { workers: workers.map((w) => w.pid), nats: nats.pid, hosts: process.pid };
    const cpuOf = () => sampleCpu([...pids.workers, pids.nats, pids.hosts]);
    resetPhase(hosts);
    await observe({ expect: bare.length });
    const bareCpu = cpuOf();
    const bareStart = performance.now();
    for (const { subject, payload } of bare) bareNc.publish(subject, payload);
    await bareNc.flush();
    await untilConverged(hosts, deadline("the bare overrides did not all arrive"));
    const baseline = figures(hosts, bareStart, flipPerHost, cpuUsed(bareCpu, cpuOf(), pids));
    const bareSeen = await untilObserved(observe, deadline("the observer did not see every bare override"));
    await Promise.all(hosts.map((h) => h.nc.flush()));
    for (const [h, host] of hosts.entries()) {
      for (const [key, entry] of host.client.cacheEntries()) {
        const was = before[h]!.get(key);
        if (was?.permitted !== entry.permitted || was.message !== entry.message) {
          throw new ArbiterError(
            ErrorCode.Internal,
            "convergence bench: the baseline changed a cached entry",
          );
        }
      }
    }
    interrupted();

    log.info({ workers: workerCount }, "convergence: applying a rules change that flips half the entries");
    resetPhase(hosts);
    await observe({ expect: flipPerHost * options.hosts });
    const applyCpu = cpuOf();
    let ackedAt = 0;
    const { revision } = await rulesAdmin.apply(FLIP_RULES, {
      reason: "arbiter bench: convergence",
      onAppended: () => {
        ackedAt = performance.now();
      },
    });
    await untilConverged(hosts, deadline("the hosts did not all converge"));
    const arbiter = figures(hosts, ackedAt, flipPerHost, cpuUsed(applyCpu, cpuOf(), pids));
    // Every override of the revision is out once its re-evaluation is acknowledged.
    await untilReevaluated(nc, revision, deadline(`revision ${revision} was not re-evaluated`));
    const arbiterSeen = await untilObserved(observe, deadline("the observer did not see every override"));
    const lastPublished = lastPublishedFigures(
      { arbiter: arbiterSeen, baseline: bareSeen },
      { arbiter: epochOf(ackedAt), baseline: epochOf(bareStart) },
    );
    await Promise.all(hosts.map((h) => h.nc.flush()));
    const check = checkCaches(hosts, before, flipPerHost);
    const workerStats = await workerStatuses(nc);
    log.info({ workers: workerCount }, "convergence: the same with no host listening (Arbiter alone)");
    const alone = await aloneRun({
      silenceHosts: async () => {
        await Promise.all(hosts.map((h) => h.client.stop()));
      },
      flipped: hosts.flatMap((h) =>
        [...h.ids].filter(([, flips]) => flips).map(([id]) => ({ id, subject: h.changesTopic })),
      ),
      rulesAdmin,
      rules: ALONE_RULES,
      message: ALONE_MESSAGE,
      bareNc,
      observe,
      pids: { ...pids, observer: observer.pid, bench: process.pid },
      untilReevaluated: (rev) => untilReevaluated(nc, rev, deadline(`revision ${rev} was not re-evaluated`)),
      untilObserved: () => untilObserved(observe, deadline("the observer did not see every override")),
      workerOverrides: async () =>
        Object.fromEntries(
          Object.entries(await workerStatuses(nc)).map(([id, s]) => [id, s["fanoutOverrides"] ?? 0]),
        ),
    });
    return {
      workers: workerCount,
      changes,
      hosts: options.hosts,
      decisions: perHost * options.hosts,
      flipped: flipPerHost * options.hosts,
      revision,
      setupMs: round1(setupMs),
      arbiter,
      baseline,
      ratioMax: baseline.perHostMs.max > 0 ? round1(arbiter.perHostMs.max / baseline.perHostMs.max) : 0,
      lastPublished,
      check,
      workerStats,
      alone,
    };
  } finally {
    for (const cleanup of cleanups.reverse()) {
      await cleanup().catch((err: unknown) => log.warn({ err }, "cleanup step failed"));
    }
  }
}

function component(id: string) {
  return {
    componentId: id,
    imageRef: `ghcr.io/example/${id}:0.1.0`,
    maxInstances: 1,
    annotations: {},
    claims: null,
  };
}

function workerExited(w: BenchChild): ArbiterError {
  return new ArbiterError(
    ErrorCode.Internal,
    `the ${w.name} (pid ${w.pid}) exited (code ${w.exit?.code}, signal ${w.exit?.signal}):\n${w.stderrTail()}`,
  );
}

function resetPhase(hosts: readonly BenchHost[]): void {
  for (const host of hosts) {
    host.seen = new Set();
    host.convergedAt = null;
    host.wrongOverrides = 0;
  }
}

async function untilConverged(hosts: readonly BenchHost[], check: () => void): Promise<void> {
  while (hosts.some((h) => h.convergedAt === null)) {
    check();
    await delay(POLL_MS);
  }
}

async function untilIndexed(nc: NatsConnection, check: () => void): Promise<void> {
  const names = resourceNames();
  const jsm = await jetstreamManager(nc);
  // The last request batch: the index consumer is not delivered re-evaluations' batches.
  const last =
    (await jsm.streams.getMessage(names.decisionsStream, { last_by_subj: names.decisionsSubject }))?.seq ?? 0;
  while (
    (await jsm.consumers.info(names.decisionsStream, names.activeIndexConsumer)).ack_floor.stream_seq < last
  ) {
    check();
    await delay(POLL_MS);
  }
}

async function untilReevaluated(nc: NatsConnection, revision: number, check: () => void): Promise<void> {
  const names = resourceNames();
  const jsm = await jetstreamManager(nc);
  while (
    (await jsm.consumers.info(names.rulesStream, names.revokerConsumer)).ack_floor.stream_seq < revision
  ) {
    check();
    await delay(POLL_MS);
  }
}

/** A `performance.now()` of this process as milliseconds since the epoch, as the observer gives them. */
function epochOf(now: number): number {
  return performance.timeOrigin + now;
}

async function untilObserved(
  observe: (body: { expect?: number }) => Promise<ObserverPhase>,
  check: () => void,
): Promise<ObserverPhase> {
  for (;;) {
    const phase = await observe({});
    if (phase.reachedAt !== null) return phase;
    check();
    await delay(POLL_MS);
  }
}

function lastPublishedFigures(
  seen: { readonly arbiter: ObserverPhase; readonly baseline: ObserverPhase },
  start: { readonly arbiter: number; readonly baseline: number },
): LastPublishedFigures {
  const ms = (phase: ObserverPhase, from: number) => round1((phase.reachedAt ?? Number.NaN) - from);
  const arbiterFirstMs = round1((seen.arbiter.firstAt ?? Number.NaN) - start.arbiter);
  const rate = (phase: ObserverPhase, took: number) =>
    took > 0 ? Math.round((phase.expected / took) * 1000) : 0;
  const arbiterMs = ms(seen.arbiter, start.arbiter);
  const baselineMs = ms(seen.baseline, start.baseline);
  return {
    arbiterMs,
    arbiterFirstMs,
    baselineMs,
    arbiterOverridesPerSecond: rate(seen.arbiter, arbiterMs),
    baselineOverridesPerSecond: rate(seen.baseline, baselineMs),
    observed: { arbiter: seen.arbiter.count, baseline: seen.baseline.count },
  };
}

function cpuUsed(
  from: CpuSample,
  to: CpuSample,
  pids: { readonly workers: readonly number[]; readonly nats: number; readonly hosts: number },
): ConvergenceFigures["cpuMs"] {
  const ms = (list: readonly number[]) => cpuMsUsed(from, to, list);
  return { workers: ms(pids.workers), natsServer: ms([pids.nats]), hosts: ms([pids.hosts]) };
}

function figures(
  hosts: readonly BenchHost[],
  start: number,
  flipPerHost: number,
  cpuMs: ConvergenceFigures["cpuMs"],
): ConvergenceFigures {
  const times = hosts.map((h) => (h.convergedAt ?? Number.NaN) - start).sort((a, b) => a - b);
  const max = times[times.length - 1] ?? 0;
  const overrides = flipPerHost * hosts.length;
  return {
    overridesApplied: hosts.reduce((sum, h) => sum + h.seen.size, 0),
    perHostMs: {
      p50: round1(times[Math.floor((times.length - 1) / 2)] ?? 0),
      max: round1(max),
      min: round1(times[0] ?? 0),
    },
    overridesPerSecond: max > 0 ? Math.round((overrides / max) * 1000) : 0,
    deliveriesPerSecond: max > 0 ? Math.round(((overrides * hosts.length) / max) * 1000) : 0,
    cpuMs,
  };
}

/** Every flipped entry denied with the new message under its own request id; every other one as it was. */
function checkCaches(
  hosts: readonly BenchHost[],
  before: readonly ReadonlyMap<string, { permitted: boolean; message: string | null; requestId: string }>[],
  flipPerHost: number,
): ConvergenceRun["check"] {
  let flipped = 0;
  let untouched = 0;
  const wrong: string[] = [];
  for (const [h, host] of hosts.entries()) {
    if (host.wrongOverrides > 0)
      wrong.push(`host ${h}: ${host.wrongOverrides} overrides of entries that do not flip`);
    const keys = host.client.requestKeys();
    const cache = host.client.cacheEntries();
    for (const [id, flips] of host.ids) {
      const key = keys.get(id) ?? "";
      const now = cache.get(key);
      const was = before[h]!.get(key);
      if (flips && now?.permitted === false && now.message === REVOKED_MESSAGE && now.requestId === id)
        flipped++;
      else if (
        !flips &&
        now !== undefined &&
        was !== undefined &&
        now.permitted === was.permitted &&
        now.message === was.message
      )
        untouched++;
      else if (wrong.length < 5) wrong.push(`host ${h} entry ${key}: ${JSON.stringify(now)}`);
    }
  }
  const expectedOthers = hosts.reduce((sum, h) => sum + h.ids.size, 0) - flipPerHost * hosts.length;
  if (wrong.length > 0 || flipped !== flipPerHost * hosts.length || untouched !== expectedOthers) {
    throw new ArbiterError(
      ErrorCode.Internal,
      `convergence bench: caches wrong after the rules change (${flipped} of ${flipPerHost * hosts.length} flipped, ${untouched} of ${expectedOthers} untouched): ${wrong.join("; ")}`,
    );
  }
  return { flippedWithNewOutcome: flipped, othersUntouched: untouched, ok: true };
}

/** Each worker's fan-out counters (`fanout…` among its status counters), by worker id. */
async function workerStatuses(nc: NatsConnection): Promise<Record<string, Record<string, number>>> {
  const out: Record<string, Record<string, number>> = {};
  for (const status of await askWorkers(nc, resourceNames().statusSubject)) {
    out[status.id] = Object.fromEntries(
      Object.entries(status.stats).filter(([name]) => name.startsWith("fanout")),
    );
  }
  return out;
}

function round1(value: number): number {
  return Math.round(value * 10) / 10;
}
