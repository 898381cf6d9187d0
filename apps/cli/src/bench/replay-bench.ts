import { readFileSync } from "node:fs";
import { cpus, loadavg } from "node:os";
import { fileURLToPath } from "node:url";
import { type NatsServerProcess, startNatsServer } from "@arbiter/embedded-nats";
import { decodePolicyRequest, type NormalizedRequest } from "@arbiter/protocol";
import { decideRequest, decisionRecord, parseRulesDocument, type RulesDocument } from "@arbiter/rules";
import { createRulesAdmin, type DecisionBatch, openJetStreamStore, signDecisionBatch } from "@arbiter/store";
import { createSigner, generateKey } from "@arbiter/trust";
import { encodeDecisionRecord } from "@arbiter/worker";
import { connect } from "@nats-io/transport-node";
import type { Logger } from "pino";
import { type ReplayThreads, runReplay } from "../commands/audit-replay.js";

/** Settings of {@link runReplayBench}. */
export interface ReplayBenchOptions {
  /** Decisions written, then read and replayed. */
  readonly decisions: number;
  /** Rules revisions (documents applied) the decisions are spread over. */
  readonly revisions: number;
  /** Where replay runs (as `audit replay --threads` sets it). */
  readonly threads: ReplayThreads;
  readonly log: Logger;
  readonly signal?: AbortSignal;
}

/** One pass over the decision stream. */
export interface ReadPass {
  readonly decisions: number;
  readonly seconds: number;
  readonly decisionsPerSecond: number;
  /**
   * CPU time of this process (user + system) per decision, in µs: what the pass costs, apart from
   * the nats-server's share, on a machine whose other load moves the wall-clock rate.
   */
  readonly cpuMicrosPerDecision: number;
}

/** What the replay benchmark measured. */
export interface ReplayBenchReport {
  readonly settings: {
    readonly decisions: number;
    readonly revisions: number;
    readonly decisionsPerBatch: number;
    /** Worker threads replay used, and after how many records it started them. */
    readonly threads: ReplayThreads;
  };
  /** Writing the history: sealed batches signed by an enrolled worker key, appended directly. */
  readonly write: { readonly messages: number; readonly seconds: number };
  /**
   * Reading every record of the stream as replay reads it (every message, each record's text as
   * stored, unsealed) and nothing else.
   */
  readonly bareRead: ReadPass;
  /** `audit replay`'s own loop over the same stream. */
  readonly replay: ReadPass & { readonly mismatches: number; readonly revisionsFolded: number };
  /** replay / bare read, in decisions per second. */
  readonly ratio: number;
  readonly target: {
    readonly ratio: number;
    readonly decisionsPerSecond: number;
    readonly met: boolean;
  };
  readonly machine: {
    readonly cpuModel: string;
    readonly cores: number;
    readonly node: string;
    readonly load: readonly number[];
  };
}

function cpuPer(usage: NodeJS.CpuUsage, decisions: number): number {
  return decisions > 0 ? Math.round(((usage.user + usage.system) / decisions) * 10) / 10 : 0;
}

/** The targets: replay at least half as fast as a bare read of the stream, and 100,000 decisions/s. */
export const REPLAY_TARGET = { ratio: 0.5, decisionsPerSecond: 100_000 } as const;

const DECISIONS_PER_BATCH = 32;
/** Batches appended at once while writing the history. */
const APPENDS_IN_FLIGHT = 64;
const here = (path: string) => fileURLToPath(new URL(path, import.meta.url));
const EXAMPLE_RULES = here("../../../../deploy/rules/example.yaml");
const FIXTURES = here("../../../../test/data/wasmcloud-v1/");
const FIXTURE_NAMES = ["start-component", "start-provider", "perform-invocation"] as const;

/** A fixture request, and how to make it again under another request id without decoding it again. */
interface Template {
  readonly request: NormalizedRequest;
  readonly before: Buffer;
  readonly after: Buffer;
}

function template(name: string): Template {
  const text = readFileSync(`${FIXTURES}${name}.json`, "utf8").trim();
  const decoded = decodePolicyRequest(Buffer.from(text));
  if (!decoded.ok) throw new Error(`${name}: ${decoded.reason}`);
  const quoted = JSON.stringify(decoded.request.requestId);
  const at = text.indexOf(quoted);
  return {
    request: decoded.request,
    before: Buffer.from(text.slice(0, at + 1)),
    after: Buffer.from(text.slice(at + quoted.length - 1)),
  };
}

/** The example rules plus one rule of revision `n`, the default alternating: every revision decides differently. */
function documentOf(example: RulesDocument, n: number): RulesDocument {
  return parseRulesDocument(
    JSON.stringify({
      ...example,
      default: n % 2 === 0 ? "deny" : "allow",
      rules: [
        ...example.rules,
        {
          id: `revision-${n}`,
          effect: "deny",
          when: `kind == "startComponent" && subject.imageRef == "ghcr.io/example/revision-${n}:0.1.0"`,
        },
      ],
    }),
  );
}

/**
 * Writes `decisions` decisions of the three real wasmCloud requests across `revisions` rules
 * revisions into a fresh nats-server's decision stream, then reads the stream twice in the same
 * run: once bare (every record read, nothing else) and once through `audit replay`'s loop.
 */
export async function runReplayBench(options: ReplayBenchOptions): Promise<ReplayBenchReport> {
  const { log } = options;
  const nats: NatsServerProcess = await startNatsServer();
  try {
    const nc = await connect({ servers: nats.url, name: "arbiter-bench-replay", noAsyncTraces: true });
    try {
      const store = await openJetStreamStore(nc);
      const adminSigner = createSigner(generateKey("O").seed);
      const admin = createRulesAdmin({ store, signer: adminSigner });
      const workerKey = generateKey("N");
      const signer = createSigner(workerKey.seed);
      await admin.ensureDeployment();
      await admin.enrollWorker(signer.publicKey, { name: "bench-replay" });
      const example = parseRulesDocument(readFileSync(EXAMPLE_RULES, "utf8"), { source: EXAMPLE_RULES });
      const templates = FIXTURE_NAMES.map(template);
      const worker = { id: "bench-replay", publicKey: signer.publicKey };
      log.info(
        { decisions: options.decisions, revisions: options.revisions },
        "writing the decision history",
      );
      const writeStart = performance.now();
      const inFlight = new Set<Promise<unknown>>();
      let messages = 0;
      let written = 0;
      const now = new Date();
      for (let n = 1; n <= options.revisions; n++) {
        const applied = await admin.apply(documentOf(example, n));
        const ruleset = await admin.stateAt(applied.revision);
        const evaluations = templates.map((t) => decideRequest(t.request, ruleset, now));
        const share =
          Math.floor(options.decisions / options.revisions) +
          (n <= options.decisions % options.revisions ? 1 : 0);
        for (let start = 0; start < share; start += DECISIONS_PER_BATCH) {
          options.signal?.throwIfAborted();
          const lines: { decisionId: string; body: Uint8Array }[] = [];
          for (let i = start; i < Math.min(share, start + DECISIONS_PER_BATCH); i++) {
            const k = written++;
            const t = templates[k % templates.length]!;
            const requestId = `bench-${k.toString(36).padStart(8, "0")}`;
            const bytes = Buffer.concat([t.before, Buffer.from(requestId), t.after]);
            const input = { ...(t.request.input as object), requestId };
            const request = { ...t.request, requestId, input };
            const record = decisionRecord(request, evaluations[k % templates.length]!, {
              decisionId: `d-${requestId}`,
              revision: ruleset.revision,
              deployment: ruleset.deployment,
              now,
              worker,
              latencyMicros: 20,
            });
            lines.push({ decisionId: record.decisionId, body: encodeDecisionRecord(record, bytes) });
          }
          const batch: DecisionBatch = signDecisionBatch(lines, signer);
          const append = store.decisions.append(batch).finally(() => inFlight.delete(append));
          inFlight.add(append);
          messages++;
          if (inFlight.size >= APPENDS_IN_FLIGHT) await Promise.race(inFlight);
        }
      }
      await Promise.all(inFlight);
      const write = { messages, seconds: (performance.now() - writeStart) / 1000 };
      log.info({ seconds: write.seconds.toFixed(1) }, "written; reading the stream bare");

      const bareStart = performance.now();
      const bareCpu = process.cpuUsage();
      let bare = 0;
      for await (const stored of store.decisions.read({ sealed: false })) {
        if (stored.text.length > 0) bare++;
      }
      const bareSeconds = (performance.now() - bareStart) / 1000;
      const bareRead = {
        decisions: bare,
        seconds: bareSeconds,
        decisionsPerSecond: Math.round(bare / bareSeconds),
        cpuMicrosPerDecision: cpuPer(process.cpuUsage(bareCpu), bare),
      };
      log.info("replaying the stream");
      const replayCpu = process.cpuUsage();
      const replayed = await runReplay(
        store,
        { adminKeys: new Set([adminSigner.publicKey]) },
        {},
        undefined,
        options.threads,
      );
      const replayCpuMicros = cpuPer(process.cpuUsage(replayCpu), replayed.decisions);
      const ratio =
        bareRead.decisionsPerSecond > 0 ? replayed.decisionsPerSecond / bareRead.decisionsPerSecond : 0;
      await store.close();
      return {
        settings: {
          decisions: options.decisions,
          revisions: options.revisions,
          decisionsPerBatch: DECISIONS_PER_BATCH,
          threads: options.threads,
        },
        write,
        bareRead,
        replay: {
          decisions: replayed.decisions,
          seconds: replayed.seconds,
          decisionsPerSecond: replayed.decisionsPerSecond,
          cpuMicrosPerDecision: replayCpuMicros,
          mismatches: replayed.mismatches,
          revisionsFolded: replayed.revisions,
        },
        ratio,
        target: {
          ...REPLAY_TARGET,
          met:
            ratio >= REPLAY_TARGET.ratio && replayed.decisionsPerSecond >= REPLAY_TARGET.decisionsPerSecond,
        },
        machine: {
          cpuModel: cpus()[0]?.model ?? "unknown",
          cores: cpus().length,
          node: process.version,
          load: loadavg(),
        },
      };
    } finally {
      await nc.close();
    }
  } finally {
    await nats.stop();
  }
}
