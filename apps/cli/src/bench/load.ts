import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { errors, type MsgHdrs, type NatsConnection } from "@nats-io/transport-node";

/** A real host request whose `requestId` is replaced by a fresh one on every send. */
export interface RequestTemplate {
  /** File name of the fixture, e.g. `start-provider.json`. */
  readonly name: string;
  readonly kind: string;
  /** The asking host's key and lattice (`host.publicKey`, `host.lattice`), for signing the request. */
  readonly host: { readonly publicKey: string; readonly lattice: string };
  /** What the example rules answer; the echo responder answers `true` to everything. */
  readonly permittedUnderExampleRules: boolean;
  /** The fixture's bytes with `id` as its request id: what a host would put on the wire. */
  payload(id: string): Uint8Array;
}

/**
 * Loads a wasmCloud 1.x request fixture. The payload keeps the host's exact bytes; only the
 * request id (which occurs once, as the first field) changes. Throws when the file has no id.
 */
export function loadRequestTemplate(
  file: string,
  name: string,
  permittedUnderExampleRules: boolean,
): RequestTemplate {
  const text = readFileSync(file, "utf8").trim();
  const parsed = JSON.parse(text) as {
    requestId?: unknown;
    kind?: unknown;
    host?: { publicKey?: unknown; lattice?: unknown };
  };
  if (typeof parsed.requestId !== "string" || typeof parsed.kind !== "string") {
    throw new Error(`${file}: not a wasmCloud 1.x policy request (no requestId or kind)`);
  }
  const quoted = JSON.stringify(parsed.requestId);
  const at = text.indexOf(quoted);
  // Bytes, not a string per request: the generator stands in for hosts and should cost little.
  const before = Buffer.from(text.slice(0, at + 1));
  const after = Buffer.from(text.slice(at + quoted.length - 1));
  return {
    name,
    kind: parsed.kind,
    host: { publicKey: String(parsed.host?.publicKey ?? ""), lattice: String(parsed.host?.lattice ?? "") },
    permittedUnderExampleRules,
    payload: (id) => {
      const out = Buffer.allocUnsafe(before.length + Buffer.byteLength(id) + after.length);
      out.set(before, 0);
      const end = before.length + out.write(id, before.length);
      out.set(after, end);
      return out;
    },
  };
}

/** A phase of load: who answers, and what a correct answer says. */
export interface LoadOptions {
  readonly nc: NatsConnection;
  readonly subject: string;
  readonly templates: readonly RequestTemplate[];
  /** The `permitted` a correct answer to this request carries. */
  readonly expectPermitted: (template: RequestTemplate) => boolean;
  /**
   * Whether an answer must carry the request's own id (default true). When false (the OPA example
   * server replies with a new random id), such answers are counted in `requestIdNotEchoed` only.
   */
  readonly requestIdMustEcho?: boolean;
  readonly concurrency: number;
  readonly warmupMs: number;
  readonly durationMs: number;
  /** Per-request timeout; a late answer counts as an error, as a host would deny on it. */
  readonly timeoutMs: number;
  readonly signal: AbortSignal;
  /** Headers for each request (its signature), made by the requester just before it is sent. */
  readonly sign?: (template: RequestTemplate, payload: Uint8Array) => MsgHdrs;
  /** Called when the measured window opens and when it closes (on timers, so within a tick). */
  readonly onWindow?: (edge: "start" | "end") => void;
}

/** Latency percentiles of the answered requests, in milliseconds. */
export interface LatencySummary {
  readonly p50: number;
  readonly p99: number;
  readonly max: number;
  readonly mean: number;
}

/** What one phase of load measured (only the requests that completed inside the measured window). */
export interface LoadResult {
  /** Requests completed in the window: answers plus errors. */
  readonly requests: number;
  /** Answers received in the window, correct or not. */
  readonly answers: number;
  /** Answers per second over the window. */
  readonly answersPerSecond: number;
  readonly latencyMs: LatencySummary;
  readonly errors: {
    readonly total: number;
    readonly timeouts: number;
    readonly noResponders: number;
    readonly other: number;
    /** The first error message seen, if any. */
    readonly sample: string | null;
  };
  /**
   * Answers undecodable or with an unexpected `permitted`, and (unless the phase allows it) answers
   * with another request id.
   */
  readonly mismatches: number;
  /** Answers whose `requestId` is not the request's, whether or not that counts as a mismatch. */
  readonly requestIdNotEchoed: number;
  /** Per payload (template name): answers with an unexpected `permitted` or undecodable. */
  readonly wrongAnswersByPayload: Readonly<Record<string, number>>;
  /** Measured window, in milliseconds (the requested duration, give or take a timer tick). */
  readonly windowMs: number;
  /** Every answer of the phase, warm-up and the final in-flight requests included. */
  readonly answersTotal: number;
}

/**
 * Runs `concurrency` requesters against `subject`; each sends its next request when the previous one
 * is answered (or fails), cycling through the templates with a fresh UUID per request. The first
 * `warmupMs` are not measured. Stops early, without throwing, when `signal` aborts.
 */
export async function runLoad(options: LoadOptions): Promise<LoadResult> {
  const { nc, subject, templates, timeoutMs, signal } = options;
  const start = nowMs();
  const measureFrom = start + options.warmupMs;
  const measureUntil = measureFrom + options.durationMs;
  const latencies: number[] = [];
  let answersTotal = 0;
  let mismatches = 0;
  let requestIdNotEchoed = 0;
  const wrongByTemplate = templates.map(() => 0);
  const idMustEcho = options.requestIdMustEcho ?? true;
  let timeouts = 0;
  let noResponders = 0;
  let other = 0;
  let sample: string | null = null;
  let next = 0;

  const requester = async () => {
    while (!signal.aborted) {
      const sentAt = nowMs();
      if (sentAt >= measureUntil) return;
      const index = next++ % templates.length;
      const template = templates[index]!;
      const id = randomUUID();
      let verdict: Verdict = "undecodable";
      let failure: "timeout" | "noResponders" | "other" | null = null;
      try {
        const payload = template.payload(id);
        const reply = await nc.request(subject, payload, {
          timeout: timeoutMs,
          ...(options.sign ? { headers: options.sign(template, payload) } : {}),
        });
        answersTotal++;
        verdict = judgeAnswer(reply.string(), id, options.expectPermitted(template));
      } catch (err) {
        failure = classify(err);
        sample ??= err instanceof Error ? err.message : String(err);
      }
      const doneAt = nowMs();
      if (doneAt < measureFrom || doneAt > measureUntil) continue;
      if (failure === null) {
        latencies.push(doneAt - sentAt);
        if (verdict === "right") continue;
        if (verdict === "otherId") {
          requestIdNotEchoed++;
          if (idMustEcho) mismatches++;
          continue;
        }
        if (verdict === "wrongOtherId") requestIdNotEchoed++;
        mismatches++;
        wrongByTemplate[index]!++;
      } else if (failure === "timeout") timeouts++;
      else if (failure === "noResponders") noResponders++;
      else other++;
    }
  };
  const measured: { edge: "none" | "start" | "end" } = { edge: "none" };
  const edge = (to: "start" | "end") => {
    measured.edge = to;
    options.onWindow?.(to);
  };
  // nats.js (3.4) rejects the settled promise of every answered request with a fresh
  // `RequestError("cancelled")` (RequestOne.cancel), even with noAsyncTraces: capturing its stack
  // trace was a sixth of the load generator's CPU. Nothing here reads those stacks.
  const stackTraceLimit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  const windowTimers = [
    setTimeout(() => edge("start"), options.warmupMs),
    setTimeout(() => edge("end"), options.warmupMs + options.durationMs),
  ];
  try {
    await Promise.all(Array.from({ length: options.concurrency }, requester));
  } finally {
    Error.stackTraceLimit = stackTraceLimit;
    for (const timer of windowTimers) clearTimeout(timer);
  }
  // The last answers can come in before the closing timer has had its turn.
  if (measured.edge === "start") edge("end");

  const windowMs = Math.min(nowMs(), measureUntil) - measureFrom;
  const errorCount = timeouts + noResponders + other;
  return {
    requests: latencies.length + errorCount,
    answers: latencies.length,
    answersPerSecond: windowMs > 0 ? latencies.length / (windowMs / 1000) : 0,
    latencyMs: summarize(latencies),
    errors: { total: errorCount, timeouts, noResponders, other, sample },
    mismatches,
    requestIdNotEchoed,
    wrongAnswersByPayload: Object.fromEntries(
      templates.flatMap((t, i) => (wrongByTemplate[i]! > 0 ? [[t.name, wrongByTemplate[i]!]] : [])),
    ),
    windowMs: Math.max(0, windowMs),
    answersTotal,
  };
}

/** Monotonic clock (process.hrtime) in milliseconds. */
function nowMs(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}

/** An answer's `permitted` and `requestId` against the request's (`wrong…`: `permitted` is off). */
type Verdict = "right" | "otherId" | "wrong" | "wrongOtherId" | "undecodable";

function judgeAnswer(text: string, id: string, permitted: boolean): Verdict {
  let answer: { requestId?: unknown; permitted?: unknown };
  try {
    answer = JSON.parse(text) as { requestId?: unknown; permitted?: unknown };
  } catch {
    return "undecodable";
  }
  if (typeof answer !== "object" || answer === null) return "undecodable";
  const echoed = answer.requestId === id;
  if (answer.permitted === permitted) return echoed ? "right" : "otherId";
  return echoed ? "wrong" : "wrongOtherId";
}

function classify(err: unknown): "timeout" | "noResponders" | "other" {
  if (err instanceof errors.TimeoutError) return "timeout";
  if (err instanceof errors.RequestError) {
    if (err.isNoResponders()) return "noResponders";
    if (err.cause instanceof errors.TimeoutError) return "timeout";
  }
  return "other";
}

/** Nearest-rank percentiles (the value below which p of the samples fall), rounded to µs. */
export function summarize(samples: readonly number[]): LatencySummary {
  if (samples.length === 0) return { p50: 0, p99: 0, max: 0, mean: 0 };
  const sorted = Float64Array.from(samples).sort();
  const rank = (p: number) => sorted[Math.max(0, Math.ceil(p * sorted.length) - 1)]!;
  let sum = 0;
  for (const value of sorted) sum += value;
  const ms = (value: number) => Math.round(value * 1000) / 1000;
  return {
    p50: ms(rank(0.5)),
    p99: ms(rank(0.99)),
    max: ms(sorted[sorted.length - 1]!),
    mean: ms(sum / sorted.length),
  };
}
