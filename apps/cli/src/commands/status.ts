import type { WorkerStatusV1 } from "@arbiter/protocol";
import { Command } from "commander";
import { changesAgreement } from "../changes-agreement.js";
import {
  type ConnectionFlags,
  connectNats,
  openExistingStore,
  reportServer,
  resolveServers,
  SERVERS_HELP,
  serverOf,
} from "../context.js";
import { emit } from "../output.js";
import { askWorkers } from "../worker-status.js";

/** What `arbiter status` found: the rules stream's head and every worker that answered. */
export interface StatusReport {
  readonly server: string;
  /** The latest revision of the rules stream (0 when nothing was ever applied). */
  readonly revision: number;
  /**
   * True when at least one worker answered, every one is ready at `revision` and enrolled, and all
   * publish overrides on the same subjects.
   */
  readonly healthy: boolean;
  /**
   * Where the workers publish overrides: `shared` (the changes topic), `per-host`
   * (`<changes topic>.<host key>`), `mixed` when they disagree; null when no worker answered.
   */
  readonly changes: "shared" | "per-host" | "mixed" | null;
  /** What is wrong when the workers disagree on the changes subjects, or null. */
  readonly changesProblem: string | null;
  readonly workers: readonly {
    readonly id: string;
    readonly publicKey: string;
    readonly state: WorkerStatusV1["state"];
    readonly reason: string | null;
    readonly revision: number;
    readonly deployment: string | null;
    readonly enrolled: boolean | null;
    /** Whether it publishes overrides on per-host subjects (a worker that does not say does not). */
    readonly changesPerHost: boolean;
    /** The changes topic it publishes on (or under), null from a worker that does not say. */
    readonly changesTopic: string | null;
    /** Overrides it sent on the shared topic because their host key is no subject token, since it started. */
    readonly changesSharedFallback: number;
    /** Why this worker makes the report unhealthy, or null. */
    readonly problem: string | null;
  }[];
}

/** Why a worker's status is not what a healthy deployment shows, or null when it is. */
function problemOf(status: WorkerStatusV1, revision: number): string | null {
  if (status.state !== "ready") return status.reason ?? status.state;
  if (status.enrolled === false) return "its key is not enrolled: its decisions do not verify";
  if (status.revision < revision) return `behind: at revision ${status.revision} of ${revision}`;
  return null;
}

/** `arbiter status`: asks every running worker how it is, beside the rules stream's head; exit 1 unless healthy. */
export function statusCommand(): Command {
  return new Command("status")
    .description(
      "ask every running worker for its state, rules revision, key and where it publishes overrides, beside the rules stream's latest revision; exit 1 when none answers, one is not ready, behind or unenrolled, or they disagree on the changes subjects",
    )
    .option("--servers <urls>", SERVERS_HELP)
    .option("--prefix <prefix>", "stream/subject/bucket prefix (env ARBITER_PREFIX)")
    .option("-v, --verbose", "say on stderr which NATS server was used")
    .option(
      "--json",
      "print {server, revision, healthy, changes, changesProblem, workers: [{id, state, reason, revision, changesPerHost, changesTopic, changesSharedFallback, problem, …}]}",
    )
    .action(async (flags: ConnectionFlags & { json?: boolean }) => {
      const nc = await connectNats(resolveServers(flags), "arbiter-cli");
      let report: StatusReport;
      try {
        reportServer(flags, nc);
        const store = await openExistingStore(nc, flags);
        const revision = await store.rules.lastRevision();
        const answers = await askWorkers(nc, store.names.statusSubject);
        const workers = answers
          .sort((a, b) => a.id.localeCompare(b.id))
          .map((w) => ({
            id: w.id,
            publicKey: w.publicKey,
            state: w.state,
            reason: w.reason,
            revision: w.revision,
            deployment: w.deployment ?? null,
            enrolled: w.enrolled ?? null,
            changesPerHost: w.changesPerHost ?? false,
            changesTopic: w.changesTopic ?? null,
            changesSharedFallback: w.stats["changesSharedFallback"] ?? 0,
            problem: problemOf(w, revision),
          }));
        const { changes, problem: changesProblem } = changesAgreement(answers);
        report = {
          server: serverOf(nc),
          revision,
          healthy: workers.length > 0 && workers.every((w) => w.problem === null) && changesProblem === null,
          changes,
          changesProblem,
          workers,
        };
      } finally {
        await nc.close();
      }
      emit(flags.json === true, report, () => {
        const head = `rules stream at revision ${report.revision} (${report.server})`;
        if (report.workers.length === 0)
          return `${head}\nno worker answered: nothing answers hosts' policy requests (start \`arbiter worker\` or \`arbiter up\`)`;
        return [
          head,
          `${"WORKER".padEnd(20)}  ${"STATE".padEnd(8)}  ${"REVISION".padEnd(8)}  ${"CHANGES".padEnd(8)}  ${"PUBLIC KEY".padEnd(56)}  PROBLEM`,
          ...report.workers.map((w) =>
            `${w.id.padEnd(20)}  ${w.state.padEnd(8)}  ${String(w.revision).padEnd(8)}  ${(w.changesPerHost ? "per-host" : "shared").padEnd(8)}  ${w.publicKey.padEnd(56)}  ${w.problem ?? ""}`.trimEnd(),
          ),
          ...report.workers
            .filter((w) => w.changesSharedFallback > 0)
            .map(
              (w) =>
                `${w.id}: ${w.changesSharedFallback} override(s) sent on the shared changes topic since it started, their host keys being no subject token`,
            ),
          ...(report.changesProblem === null ? [] : [report.changesProblem]),
        ].join("\n");
      });
      if (!report.healthy) process.exitCode = 1;
    });
}
