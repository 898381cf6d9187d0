import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { availableParallelism, cpus, loadavg, release } from "node:os";
import { setTimeout as delay } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { type NatsServerProcess, startNatsServer } from "@arbiter/embedded-nats";
import { ArbiterError, DEFAULT_POLICY_TOPIC, DEFAULT_QUEUE_GROUP, ErrorCode } from "@arbiter/protocol";
import { parseRulesDocument } from "@arbiter/rules";
import { createRulesAdmin, openJetStreamStore } from "@arbiter/store";
import { createSigner, generateKey } from "@arbiter/trust";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import type { Logger } from "pino";
import { type BenchChild, type ChildExit, spawnNode } from "./child-process.js";
import { type LoadResult, loadRequestTemplate, type RequestTemplate, runLoad } from "./load.js";
import { type CpuSample, cpuPercent, sampleCpu } from "./process-cpu.js";

/** Settings of {@link runDecisionsBench}. */
export interface DecisionsBenchOptions {
  readonly concurrency: number;
  readonly warmupMs: number;
  readonly durationMs: number;
  readonly timeoutMs: number;
  /** Run the worker under `node --cpu-prof`, writing its profile into this folder. */
  readonly workerCpuProfDir?: string;
  /** Aborting stops the load, cleans up and rejects with {@link BenchInterruptedError}. */
  readonly signal: AbortSignal;
  readonly log: Logger;
}

/** Where and with what the benchmark ran. */
export interface MachineInfo {
  readonly cpuModel: string;
  readonly cores: number;
  readonly platform: string;
  readonly node: string;
  readonly natsServer: string;
  /** 1, 5 and 15 minute load averages before and after the run: the machine is shared. */
  readonly loadAverageBefore: readonly number[];
  readonly loadAverageAfter: readonly number[];
}

/** One measured responder. */
export interface PhaseReport extends LoadResult {
  readonly responder: string;
  /**
   * CPU used during the measured window, in percent of one core (Linux only, else null): where the
   * time goes on a machine with few cores, where all three processes compete.
   */
  readonly cpuPercent: {
    readonly responder: number | null;
    readonly natsServer: number | null;
    readonly loadGenerator: number | null;
  };
}

/** The report of `arbiter bench`: the worker beside the echo baseline, same server, same run. */
export interface DecisionsBenchReport {
  readonly benchmark: "decisions";
  readonly date: string;
  readonly machine: MachineInfo;
  readonly settings: {
    readonly concurrency: number;
    readonly warmupSeconds: number;
    readonly durationSeconds: number;
    readonly timeoutMs: number;
    readonly payloads: readonly string[];
    readonly topic: string;
    readonly workerCpuProfDir: string | null;
  };
  readonly echo: PhaseReport;
  readonly worker: PhaseReport & {
    readonly rulesRevision: number;
    readonly exit: ChildExit;
    /** Decisions in the decision stream after the run, against every answer the worker gave. */
    readonly decisionLog: {
      readonly stream: string;
      readonly recorded: number;
      readonly answered: number;
      readonly ok: boolean;
    };
  };
  /** Worker figure divided by the echo figure. */
  readonly ratio: { readonly throughput: number; readonly p50: number; readonly p99: number };
  readonly target: { readonly throughputRatio: number; readonly met: boolean };
}

/** Ctrl-C (or SIGTERM) during the benchmark; everything it started has been stopped. */
export class BenchInterruptedError extends ArbiterError {
  constructor() {
    super(ErrorCode.Internal, "benchmark interrupted; every process it started has been stopped");
    this.name = "BenchInterruptedError";
  }
}

/** True when `err` is a {@link BenchInterruptedError}. */
export function isBenchInterruptedError(err: unknown): err is BenchInterruptedError {
  return err instanceof BenchInterruptedError;
}

/** The product target of the decisions benchmark: one worker at half the echo throughput or better. */
export const THROUGHPUT_TARGET = 0.5;

const here = (path: string) => fileURLToPath(new URL(path, import.meta.url));
const ECHO_RESPONDER = here("./echo-responder.js");
const CLI_MAIN = here("../main.js");
const EXAMPLE_RULES = here("../../../../deploy/rules/example.yaml");
const FIXTURES = here("../../../../test/data/wasmcloud-v1/");
/** Expected answers under the example rules: test/data/wasmcloud-v1/README.md. */
const FIXTURE_FILES = [
  ["start-component.json", false],
  ["start-provider.json", true],
  ["perform-invocation.json", true],
] as const;
const READY_TIMEOUT_MS = 30_000;
const READY_POLL_MS = 50;
const WORKER_NAME = "bench-worker";
/** Settings a worker would otherwise pick up from our environment and that would move it elsewhere. */
const FOREIGN_ENV = [
  "NATS_URL",
  "ARBITER_PREFIX",
  "ARBITER_REPLICAS",
  "ARBITER_ADMIN_KEYS",
  "ARBITER_ADMIN_SEED",
  "WASMCLOUD_POLICY_TOPIC",
  "WASMCLOUD_POLICY_CHANGES_TOPIC",
];

/**
 * Measures one decision worker (decision log on) under `concurrency` requesters, beside a bare
 * NATS echo responder on the same embedded nats-server with the same load and payloads. Stops
 * every process and removes every temporary folder before it returns or throws.
 */
export async function runDecisionsBench(options: DecisionsBenchOptions): Promise<DecisionsBenchReport> {
  const { log, signal } = options;
  const templates = FIXTURE_FILES.map(([name, permitted]) =>
    loadRequestTemplate(`${FIXTURES}${name}`, name, permitted),
  );
  const probe = templates.find((t) => t.permittedUnderExampleRules)!;
  const document = parseRulesDocument(readFileSync(EXAMPLE_RULES, "utf8"), { source: EXAMPLE_RULES });
  const loadAverageBefore = loadavg();
  const cleanups: Array<() => Promise<unknown>> = [];
  const interrupted = () => {
    if (signal.aborted) throw new BenchInterruptedError();
  };

  try {
    log.info("starting nats-server (JetStream, temporary store)");
    const nats: NatsServerProcess = await startNatsServer();
    cleanups.push(() => nats.stop());
    // The load generator stands in for the hosts: it skips the stack traces nats.js captures for
    // every request (noAsyncTraces), the same for both responders.
    const nc = await connect({ servers: nats.url, name: "arbiter-bench", noAsyncTraces: true });
    cleanups.push(() => nc.close());
    interrupted();

    const load = async (
      responder: BenchChild,
      expectPermitted: (t: RequestTemplate) => boolean,
    ): Promise<Omit<PhaseReport, "responder">> => {
      const pids = [responder.pid, nats.pid, process.pid];
      const samples: CpuSample[] = [];
      const result = await runLoad({
        nc,
        subject: DEFAULT_POLICY_TOPIC,
        templates,
        expectPermitted,
        concurrency: options.concurrency,
        warmupMs: options.warmupMs,
        durationMs: options.durationMs,
        timeoutMs: options.timeoutMs,
        signal,
        onWindow: () => samples.push(sampleCpu(pids)),
      });
      const [from, to] = samples;
      const cpu = (pid: number) => (from && to ? cpuPercent(from, to, pid) : null);
      return {
        ...result,
        cpuPercent: {
          responder: cpu(responder.pid),
          natsServer: cpu(nats.pid),
          loadGenerator: cpu(process.pid),
        },
      };
    };

    const childEnv: NodeJS.ProcessEnv = { ...process.env, ARBITER_LOG_LEVEL: "warn" };
    for (const name of FOREIGN_ENV) delete childEnv[name];

    const echo = spawnNode(
      "echo responder",
      [
        ECHO_RESPONDER,
        "--servers",
        nats.url,
        "--topic",
        DEFAULT_POLICY_TOPIC,
        "--queue",
        DEFAULT_QUEUE_GROUP,
      ],
      childEnv,
    );
    cleanups.push(() => echo.stop());
    await untilAnswering(nc, echo, probe, true, signal);
    log.info({ echoPid: echo.pid }, "measuring the echo responder");
    const echoResult = await load(echo, () => true);
    await echo.stop();
    interrupted();

    const admin = createSigner(generateKey("O").seed, "O");
    const store = await openJetStreamStore(nc, { replicas: 1 });
    const { revision } = await createRulesAdmin({ store, signer: admin }).apply(document, {
      reason: "arbiter bench",
    });
    const profiling = options.workerCpuProfDir
      ? [
          "--cpu-prof",
          "--cpu-prof-dir",
          options.workerCpuProfDir,
          "--cpu-prof-name",
          `${WORKER_NAME}.cpuprofile`,
        ]
      : [];
    const worker = spawnNode(
      "worker",
      [
        ...profiling,
        CLI_MAIN,
        "worker",
        "--servers",
        nats.url,
        "--name",
        WORKER_NAME,
        "--admin-keys",
        admin.publicKey,
      ],
      childEnv,
    );
    cleanups.push(() => worker.stop());
    const probeAnswers = await untilAnswering(nc, worker, probe, true, signal);
    log.info({ workerPid: worker.pid, revision }, "measuring the worker");
    const workerResult = await load(worker, (t) => t.permittedUnderExampleRules);
    const workerExit = await worker.stop("SIGTERM");
    interrupted();

    // Every record, not every message: a message holds a batch of decisions.
    let recorded = 0;
    for await (const _ of store.decisions.read()) recorded++;
    const answered = workerResult.answersTotal + probeAnswers;

    return {
      benchmark: "decisions",
      date: new Date().toISOString(),
      machine: {
        cpuModel: cpus()[0]?.model.trim() ?? "unknown",
        cores: availableParallelism(),
        platform: `${process.platform} ${release()} ${process.arch}`,
        node: process.version,
        natsServer: nc.info?.version ?? "unknown",
        loadAverageBefore: loadAverageBefore.map(round2),
        loadAverageAfter: loadavg().map(round2),
      },
      settings: {
        concurrency: options.concurrency,
        warmupSeconds: options.warmupMs / 1000,
        durationSeconds: options.durationMs / 1000,
        timeoutMs: options.timeoutMs,
        payloads: templates.map((t) => t.name),
        topic: DEFAULT_POLICY_TOPIC,
        workerCpuProfDir: options.workerCpuProfDir ?? null,
      },
      echo: { responder: "bare NATS echo (separate Node process, JSON.parse + reply)", ...echoResult },
      worker: {
        responder: `arbiter worker --name ${WORKER_NAME} (separate process, decision log on)`,
        ...workerResult,
        rulesRevision: revision,
        exit: workerExit,
        decisionLog: { stream: store.names.decisionsStream, recorded, answered, ok: recorded >= answered },
      },
      ratio: {
        throughput: ratio(workerResult.answersPerSecond, echoResult.answersPerSecond),
        p50: ratio(workerResult.latencyMs.p50, echoResult.latencyMs.p50),
        p99: ratio(workerResult.latencyMs.p99, echoResult.latencyMs.p99),
      },
      target: {
        throughputRatio: THROUGHPUT_TARGET,
        met: workerResult.answersPerSecond >= THROUGHPUT_TARGET * echoResult.answersPerSecond,
      },
    };
  } catch (err) {
    if (signal.aborted) throw new BenchInterruptedError();
    throw err;
  } finally {
    for (const cleanup of cleanups.reverse()) {
      await cleanup().catch((err: unknown) => log.warn({ err }, "cleanup step failed"));
    }
  }
}

/**
 * Polls with a real request until `child` gives the expected answer; returns how many answers it
 * got (each is a decision when the child is a worker). Throws when the child exits first or
 * after {@link READY_TIMEOUT_MS}.
 */
async function untilAnswering(
  nc: NatsConnection,
  child: BenchChild,
  template: RequestTemplate,
  permitted: boolean,
  signal: AbortSignal,
): Promise<number> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  let answers = 0;
  let last = "no answer yet";
  for (;;) {
    if (signal.aborted) throw new BenchInterruptedError();
    if (child.exit) {
      throw new ArbiterError(
        ErrorCode.Internal,
        `the ${child.name} (pid ${child.pid}) exited (code ${child.exit.code}, signal ${child.exit.signal}) before answering:\n${child.stderrTail()}`,
      );
    }
    if (Date.now() > deadline) {
      throw new ArbiterError(
        ErrorCode.Internal,
        `the ${child.name} did not answer ${template.name} correctly within ${READY_TIMEOUT_MS} ms (${last})\n${child.stderrTail()}`,
      );
    }
    const id = randomUUID();
    try {
      const reply = await nc.request(DEFAULT_POLICY_TOPIC, template.payload(id), { timeout: 1000 });
      answers++;
      const answer = JSON.parse(reply.string()) as { requestId?: unknown; permitted?: unknown };
      if (answer.requestId === id && answer.permitted === permitted) return answers;
      last = `answered ${reply.string()}`;
    } catch (err) {
      last = err instanceof Error ? err.message : String(err);
    }
    await delay(READY_POLL_MS, undefined, { signal }).catch(() => {});
  }
}

function ratio(a: number, b: number): number {
  return b > 0 ? Math.round((a / b) * 1000) / 1000 : 0;
}

function round2(value: number): number {
  return Math.round(value * 100) / 100;
}
