import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { availableParallelism, cpus, loadavg, release } from "node:os";
import { setTimeout as delay } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { type NatsServerProcess, startNatsServer } from "@arbiter/embedded-nats";
import { ArbiterError, DEFAULT_POLICY_TOPIC, DEFAULT_QUEUE_GROUP, ErrorCode } from "@arbiter/protocol";
import { parseRulesDocument } from "@arbiter/rules";
import { createRulesAdmin, openJetStreamStore } from "@arbiter/store";
import {
  createSigner,
  generateKey,
  POLICY_INVOCATION_HEADER,
  type Signer,
  signPolicyRequest,
} from "@arbiter/trust";
import { connect, headers, type MsgHdrs, type NatsConnection } from "@nats-io/transport-node";
import type { Logger } from "pino";
import { type BenchChild, type ChildExit, cpuProfArgs, spawnChild, spawnNode } from "./child-process.js";
import { type LoadResult, loadRequestTemplate, type RequestTemplate, runLoad } from "./load.js";
import { opaPolicyServerVersion } from "./opa-peer.js";
import { type CpuSample, cpuPercent, sampleCpu } from "./process-cpu.js";

/** Settings of {@link runDecisionsBench}. */
export interface DecisionsBenchOptions {
  readonly concurrency: number;
  readonly warmupMs: number;
  readonly durationMs: number;
  readonly timeoutMs: number;
  /**
   * The OPA example's policy server to measure, once alone and once as `instances` processes in a
   * queue group; or why its phases are skipped.
   */
  readonly opa: { readonly bin: string; readonly instances: number } | { readonly skipped: string };
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

/** One measured phase of the OPA example's policy server. */
export interface OpaPhaseReport extends PhaseReport {
  readonly instances: number;
  readonly queueGroup: string | null;
}

/** A payload on which the OPA server's answers differ from Arbiter's under the example rules. */
export interface AnswerDifference {
  readonly payload: string;
  /** Arbiter's answer: what the example rules decide (`permittedUnderExampleRules`). */
  readonly arbiterPermitted: boolean;
  /** Answers of the worker phase that were not that (0 when Arbiter kept to its rules). */
  readonly arbiterWrongAnswers: number;
  /** Answers of the OPA phases that were not that. */
  readonly opaWrongAnswers: number;
}

/** The OPA phases: measured beside the others, or skipped with the reason and how to build it. */
export type OpaReport =
  | {
      readonly status: "measured";
      readonly bin: string;
      readonly version: string;
      readonly single: OpaPhaseReport;
      readonly queue: OpaPhaseReport;
      /** Payloads where the OPA server (seed's policy.rego) and Arbiter (example rules) disagree. */
      readonly differsFromArbiter: readonly AnswerDifference[];
    }
  | { readonly status: "skipped"; readonly reason: string };

/** What each measured responder guarantees about an answer, in the report's words. */
export const GUARANTEES = {
  echo: "nothing: answers permitted to everything (the cost of NATS and JSON alone)",
  worker:
    "every decision recorded in the decision log (acknowledged by JetStream) before the answer; echoes the requestId; records signed (Ed25519 over batches)",
  signedWorker:
    "as the worker, and each request's invocation token verified (Ed25519, cluster issuer, origin, target, hash, age) and its id claimed in the shared replay bucket before deciding",
  opa: "no record of any decision; replies with a new random requestId, not the request's",
} as const;

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
  /**
   * A worker in `requestSignatures: required` mode under the same load, every request signed by
   * the load generator (an invocation token per request): the cost of verifying the signature
   * and claiming the token id in the shared replay bucket.
   */
  readonly signedWorker: PhaseReport & { readonly exit: ChildExit };
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
  /** Worker figure divided by the echo figure; `signedThroughput`: signed worker over unsigned worker. */
  readonly ratio: {
    readonly throughput: number;
    readonly p50: number;
    readonly p99: number;
    readonly signedThroughput: number;
  };
  readonly target: { readonly throughputRatio: number; readonly met: boolean };
  readonly opa: OpaReport;
  readonly guarantees: typeof GUARANTEES;
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
/** The `arbiter` entry point the benchmark's workers run. */
export const WORKER_CLI_MAIN = CLI_MAIN;
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
const SIGNED_WORKER_NAME = "bench-worker-signed";
const OPA_QUEUE_GROUP = "bench-opa";
/** What the OPA server prints once it has subscribed (as the example does). */
const OPA_READY_LINE = "Listening for policy requests...";
/** Settings a worker would otherwise pick up from our environment and that would move it elsewhere. */
const FOREIGN_ENV = [
  "NATS_URL",
  "ARBITER_PREFIX",
  "ARBITER_REPLICAS",
  "ARBITER_ADMIN_KEYS",
  "ARBITER_ADMIN_SEED",
  "ARBITER_WORKER_SEED",
  "ARBITER_WORKER_KEYS",
  "ARBITER_DEPLOYMENT",
  "ARBITER_ALLOW_UNENROLLED",
  "WASMCLOUD_POLICY_TOPIC",
  "WASMCLOUD_POLICY_CHANGES_TOPIC",
  "WASMCLOUD_CLUSTER_ISSUERS",
  "ARBITER_REQUEST_SIGNATURES",
  "ARBITER_MAX_TOKEN_AGE",
];

/** This process's environment without the settings that would move a worker elsewhere, logging warnings only. */
export function workerChildEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, ARBITER_LOG_LEVEL: "warn" };
  for (const name of FOREIGN_ENV) delete env[name];
  return env;
}

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
      responders: readonly BenchChild[],
      expectPermitted: (t: RequestTemplate) => boolean,
      requestIdMustEcho = true,
      sign?: (template: RequestTemplate, payload: Uint8Array) => MsgHdrs,
    ): Promise<Omit<PhaseReport, "responder">> => {
      const pids = [...responders.map((r) => r.pid), nats.pid, process.pid];
      const samples: CpuSample[] = [];
      const result = await runLoad({
        nc,
        subject: DEFAULT_POLICY_TOPIC,
        templates,
        expectPermitted,
        requestIdMustEcho,
        concurrency: options.concurrency,
        warmupMs: options.warmupMs,
        durationMs: options.durationMs,
        timeoutMs: options.timeoutMs,
        signal,
        ...(sign ? { sign } : {}),
        onWindow: () => samples.push(sampleCpu(pids)),
      });
      const [from, to] = samples;
      const cpu = (pid: number) => (from && to ? cpuPercent(from, to, pid) : null);
      const responderCpu = responders.map((r) => cpu(r.pid));
      return {
        ...result,
        cpuPercent: {
          responder: responderCpu.includes(null)
            ? null
            : Math.round(responderCpu.reduce((sum: number, c) => sum + (c ?? 0), 0) * 10) / 10,
          natsServer: cpu(nats.pid),
          loadGenerator: cpu(process.pid),
        },
      };
    };

    const childEnv = workerChildEnv();

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
    const echoResult = await load([echo], () => true);
    await echo.stop();
    interrupted();

    const admin = createSigner(generateKey("O").seed, "O");
    const store = await openJetStreamStore(nc, { replicas: 1 });
    const rulesAdmin = createRulesAdmin({ store, signer: admin });
    await rulesAdmin.apply(document, { reason: "arbiter bench" });
    // The measured worker serves as in production: with a key enrolled in the deployment.
    const workerKey = generateKey("N");
    const { revision } = await rulesAdmin.enrollWorker(workerKey.publicKey, {
      name: WORKER_NAME,
      reason: "arbiter bench",
    });
    const profiling = cpuProfArgs(options.workerCpuProfDir, `${WORKER_NAME}.cpuprofile`);
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
      { ...childEnv, ARBITER_WORKER_SEED: workerKey.seed },
    );
    cleanups.push(() => worker.stop());
    const probeAnswers = await untilAnswering(nc, worker, probe, true, signal);
    log.info({ workerPid: worker.pid, revision }, "measuring the worker");
    const workerResult = await load([worker], (t) => t.permittedUnderExampleRules);
    const workerExit = await worker.stop("SIGTERM");
    interrupted();

    const cluster = createSigner(generateKey("C").seed, "C");
    const signRequest = (template: RequestTemplate, payload: Uint8Array) =>
      signedHeaders(cluster, template, payload);
    const signedWorker = spawnNode(
      "signed-request worker",
      [
        CLI_MAIN,
        "worker",
        "--servers",
        nats.url,
        "--name",
        SIGNED_WORKER_NAME,
        "--admin-keys",
        admin.publicKey,
        "--request-signatures",
        "required",
        "--cluster-issuers",
        cluster.publicKey,
      ],
      { ...childEnv, ARBITER_WORKER_SEED: workerKey.seed },
    );
    cleanups.push(() => signedWorker.stop());
    const signedProbeAnswers = await untilAnswering(nc, signedWorker, probe, true, signal, signRequest);
    log.info({ workerPid: signedWorker.pid }, "measuring the worker on signed requests");
    const signedResult = await load([signedWorker], (t) => t.permittedUnderExampleRules, true, signRequest);
    const signedExit = await signedWorker.stop("SIGTERM");
    interrupted();

    const opaPhase = async (bin: string, instances: number, queue: boolean): Promise<OpaPhaseReport> => {
      const servers: BenchChild[] = [];
      try {
        for (let i = 0; i < instances; i++) {
          const args = ["-nats", nats.url, "-topic", DEFAULT_POLICY_TOPIC];
          const server = spawnChild(
            `OPA policy server ${i + 1}/${instances}`,
            bin,
            queue ? [...args, "-queue", OPA_QUEUE_GROUP] : args,
            childEnv,
          );
          servers.push(server);
          cleanups.push(() => server.stop());
          await server.printed(OPA_READY_LINE);
        }
        await untilAnswering(nc, servers[0]!, probe, null, signal);
        log.info({ pids: servers.map((s) => s.pid) }, `measuring ${instances} OPA policy server(s)`);
        const result = await load(servers, (t) => t.permittedUnderExampleRules, false);
        return {
          responder: queue
            ? `${instances} × OPA example policy server in queue group ${OPA_QUEUE_GROUP} (Go processes)`
            : "1 × OPA example policy server, no queue group (Go process)",
          ...result,
          instances,
          queueGroup: queue ? OPA_QUEUE_GROUP : null,
        };
      } finally {
        await Promise.all(servers.map((server) => server.stop()));
      }
    };
    let opa: OpaReport;
    if ("bin" in options.opa) {
      const { bin, instances } = options.opa;
      const single = await opaPhase(bin, 1, false);
      interrupted();
      const queue = await opaPhase(bin, instances, true);
      interrupted();
      const differsFromArbiter = templates.flatMap((t): AnswerDifference[] => {
        const opaWrongAnswers =
          (single.wrongAnswersByPayload[t.name] ?? 0) + (queue.wrongAnswersByPayload[t.name] ?? 0);
        if (opaWrongAnswers === 0) return [];
        return [
          {
            payload: t.name,
            arbiterPermitted: t.permittedUnderExampleRules,
            arbiterWrongAnswers: workerResult.wrongAnswersByPayload[t.name] ?? 0,
            opaWrongAnswers,
          },
        ];
      });
      opa = {
        status: "measured",
        bin,
        version: opaPolicyServerVersion(bin),
        single,
        queue,
        differsFromArbiter,
      };
    } else {
      opa = { status: "skipped", reason: options.opa.skipped };
    }

    // Every record, not every message: a message holds a batch of decisions.
    let recorded = 0;
    for await (const _ of store.decisions.read()) recorded++;
    const answered =
      workerResult.answersTotal + probeAnswers + signedResult.answersTotal + signedProbeAnswers;

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
      signedWorker: {
        responder: `arbiter worker --name ${SIGNED_WORKER_NAME} --request-signatures required (separate process, decision log on, every request signed)`,
        ...signedResult,
        exit: signedExit,
      },
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
        signedThroughput: ratio(signedResult.answersPerSecond, workerResult.answersPerSecond),
      },
      target: {
        throughputRatio: THROUGHPUT_TARGET,
        met: workerResult.answersPerSecond >= THROUGHPUT_TARGET * echoResult.answersPerSecond,
      },
      opa,
      guarantees: GUARANTEES,
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
 * Polls with a real request until `child` gives the expected answer (echoing the request id), or
 * with `permitted` null any `permitted` under any id; returns how many answers it got (each is a
 * decision when the child is a worker). Throws when the child exits first or after
 * {@link READY_TIMEOUT_MS}.
 */
async function untilAnswering(
  nc: NatsConnection,
  child: BenchChild,
  template: RequestTemplate,
  permitted: boolean | null,
  signal: AbortSignal,
  sign?: (template: RequestTemplate, payload: Uint8Array) => MsgHdrs,
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
      const payload = template.payload(id);
      const reply = await nc.request(DEFAULT_POLICY_TOPIC, payload, {
        timeout: 1000,
        ...(sign ? { headers: sign(template, payload) } : {}),
      });
      answers++;
      const answer = JSON.parse(reply.string()) as { requestId?: unknown; permitted?: unknown };
      if (
        permitted === null
          ? typeof answer.permitted === "boolean"
          : answer.requestId === id && answer.permitted === permitted
      )
        return answers;
      last = `answered ${reply.string()}`;
    } catch (err) {
      last = err instanceof Error ? err.message : String(err);
    }
    await delay(READY_POLL_MS, undefined, { signal }).catch(() => {});
  }
}

/** The header a signing host (or its sidecar) attaches: an invocation token over these very bytes. */
function signedHeaders(cluster: Signer, template: RequestTemplate, payload: Uint8Array): MsgHdrs {
  const h = headers();
  h.set(
    POLICY_INVOCATION_HEADER,
    signPolicyRequest(
      {
        hostKey: template.host.publicKey,
        lattice: template.host.lattice,
        policyTopic: DEFAULT_POLICY_TOPIC,
        kind: template.kind,
        request: payload,
      },
      cluster,
    ),
  );
  return h;
}

function ratio(a: number, b: number): number {
  return b > 0 ? Math.round((a / b) * 1000) / 1000 : 0;
}

function round2(value: number): number {
  return Math.round(value * 100) / 100;
}
