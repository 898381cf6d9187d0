import { performance } from "node:perf_hooks";
import { ArbiterError, ErrorCode } from "@arbiter/protocol";
import type { RulesAdmin } from "@arbiter/store";
import type { NatsConnection } from "@nats-io/transport-node";
import { type CpuSample, cpuMsUsed, sampleCpu } from "./process-cpu.js";

/** One phase of the "Arbiter alone" run, timed by the observer alone. */
export interface AloneFigures {
  /** From the start (the rules event's ack, or the first bare publish) to the first override seen. */
  readonly firstMs: number;
  /** From the start to the last expected override seen. */
  readonly lastMs: number;
  /** Every override of the phase over `lastMs`. */
  readonly overridesPerSecond: number;
  /** Overrides the observer counted, and how many matched their expected outcome. */
  readonly observed: number;
  readonly matched: number;
  /** CPU used meanwhile (Linux; null elsewhere), in ms. */
  readonly cpuMs: {
    readonly workers: number | null;
    readonly natsServer: number | null;
    readonly observer: number | null;
    /** The bench process: the publisher in the baseline, otherwise idle hosts and polling. */
    readonly bench: number | null;
  };
}

/**
 * The same rules change measured with no host listening: the hosts have dropped their changes
 * subscriptions, so only the observer process hears the overrides, each checked against the
 * outcome expected by construction. Beside it the same overrides published bare, observed alike.
 */
export interface AloneRun {
  readonly revision: number;
  readonly flipped: number;
  readonly arbiter: AloneFigures;
  readonly baseline: AloneFigures;
  /** Overrides per worker in this run (deltas of `fanoutOverrides`), by worker id. */
  readonly overridesByWorker: Readonly<Record<string, number>>;
  readonly check: { readonly overridesChecked: number; readonly ok: true };
}

/** What the observer says of its current phase (see changes-observer.ts). */
export interface ObserverPhase {
  readonly expected: number;
  readonly count: number;
  readonly firstAt: number | null;
  readonly reachedAt: number | null;
  readonly matched?: number;
  readonly wrong?: number;
  readonly wrongSamples?: readonly string[];
}

/** What the "Arbiter alone" run needs from the run it follows. */
export interface AloneContext {
  /** Stops every host's changes subscription (the hosts and their caches stay). */
  readonly silenceHosts: () => Promise<void>;
  /** Request ids of the entries that flip (the same ones the first rules change flipped), and where their host hears overrides. */
  readonly flipped: readonly { readonly id: string; readonly subject: string }[];
  readonly rulesAdmin: RulesAdmin;
  /** The rules that give the flipped entries `message` (denied) and leave the others as they are. */
  readonly rules: Parameters<RulesAdmin["apply"]>[0];
  readonly message: string;
  readonly bareNc: NatsConnection;
  readonly observe: (body: {
    expect?: number;
    check?: boolean;
    outcomes?: [string, boolean, string][];
  }) => Promise<ObserverPhase>;
  readonly pids: {
    readonly workers: readonly number[];
    readonly nats: number;
    readonly observer: number;
    readonly bench: number;
  };
  readonly untilReevaluated: (revision: number) => Promise<void>;
  readonly untilObserved: () => Promise<ObserverPhase>;
  readonly workerOverrides: () => Promise<Record<string, number>>;
}

/** Outcomes sent to the observer per control request (well under max_payload). */
const OUTCOMES_PER_REQUEST = 500;

/**
 * Runs the baseline and then Arbiter's re-evaluation with only the observer listening, and fails
 * (naming what was wrong) unless every override seen is one expected, once, and none is missing.
 */
export async function aloneRun(ctx: AloneContext): Promise<AloneRun> {
  await ctx.silenceHosts();
  const n = ctx.flipped.length;
  for (let at = 0; at < n; at += OUTCOMES_PER_REQUEST) {
    await ctx.observe({
      outcomes: ctx.flipped.slice(at, at + OUTCOMES_PER_REQUEST).map(({ id }) => [id, false, ctx.message]),
    });
  }
  const cpuOf = () => sampleCpu([...ctx.pids.workers, ctx.pids.nats, ctx.pids.observer, ctx.pids.bench]);

  const encoder = new TextEncoder();
  const bare = ctx.flipped.map(({ id, subject }) => ({
    subject,
    payload: encoder.encode(
      JSON.stringify({ requestId: id, request_id: id, permitted: false, message: ctx.message }),
    ),
  }));
  await ctx.observe({ expect: n, check: true });
  const bareCpu = cpuOf();
  const bareStart = performance.now();
  for (const { subject, payload } of bare) ctx.bareNc.publish(subject, payload);
  await ctx.bareNc.flush();
  const bareSeen = await ctx.untilObserved();
  const baseline = aloneFigures(bareSeen, bareStart, cpuUsed(bareCpu, cpuOf(), ctx.pids));
  checkPhase("the bare baseline", bareSeen);

  const before = await ctx.workerOverrides();
  await ctx.observe({ expect: n, check: true });
  const applyCpu = cpuOf();
  let ackedAt = 0;
  const { revision } = await ctx.rulesAdmin.apply(ctx.rules, {
    reason: "arbiter bench: convergence alone",
    // The clock starts at the rules event's ack, not after the snapshot write that follows it.
    onAppended: () => {
      ackedAt = performance.now();
    },
  });
  const seen = await ctx.untilObserved();
  const cpu = cpuUsed(applyCpu, cpuOf(), ctx.pids);
  // Every override of the revision is out once it is acknowledged; any extra one has arrived by
  // the next control answer (the observer hears the topic and the control on one connection).
  await ctx.untilReevaluated(revision);
  const final = await ctx.observe({});
  const arbiter = aloneFigures(seen, ackedAt, cpu);
  checkPhase("Arbiter's re-evaluation", final);
  const after = await ctx.workerOverrides();
  const overridesByWorker: Record<string, number> = {};
  for (const [id, count] of Object.entries(after)) overridesByWorker[id] = count - (before[id] ?? 0);
  return {
    revision,
    flipped: n,
    arbiter,
    baseline,
    overridesByWorker,
    check: { overridesChecked: final.matched ?? 0, ok: true },
  };
}

function checkPhase(what: string, phase: ObserverPhase): void {
  if (phase.wrong !== 0 || phase.matched !== phase.expected || phase.count !== phase.expected) {
    throw new ArbiterError(
      ErrorCode.Internal,
      `convergence bench (alone): ${what} sent ${phase.count} overrides, ${phase.matched ?? 0} of ${phase.expected} expected ones and ${phase.wrong ?? "?"} wrong: ${(phase.wrongSamples ?? []).join("; ")}`,
    );
  }
}

function aloneFigures(phase: ObserverPhase, start: number, cpuMs: AloneFigures["cpuMs"]): AloneFigures {
  const from = performance.timeOrigin + start;
  const lastMs = round1((phase.reachedAt ?? Number.NaN) - from);
  return {
    firstMs: round1((phase.firstAt ?? Number.NaN) - from),
    lastMs,
    overridesPerSecond: lastMs > 0 ? Math.round((phase.expected / lastMs) * 1000) : 0,
    observed: phase.count,
    matched: phase.matched ?? 0,
    cpuMs,
  };
}

function cpuUsed(from: CpuSample, to: CpuSample, pids: AloneContext["pids"]): AloneFigures["cpuMs"] {
  const ms = (list: readonly number[]) => cpuMsUsed(from, to, list);
  return {
    workers: ms(pids.workers),
    natsServer: ms([pids.nats]),
    observer: ms([pids.observer]),
    bench: ms([pids.bench]),
  };
}

function round1(value: number): number {
  return Math.round(value * 10) / 10;
}
