import { verifyDecision } from "@arbiter/store";
import { Command } from "commander";
import { resolveWorkerKeys } from "../context.js";
import { parseTime } from "../duration.js";
import { ExitCode, emit } from "../output.js";
import { addReplayCommands } from "./audit-replay.js";
import { connectionOptions, type RulesFlags, read } from "./rules.js";

interface AuditFlags extends RulesFlags {
  workerKeys?: string;
  since?: string;
}

/** The most failures listed one by one; the counts cover them all. */
const MAX_LISTED = 100;

/** `arbiter audit verify`. */
export function auditCommand(): Command {
  const audit = new Command("audit").description("check the records after the fact");
  connectionOptions(
    audit
      .command("verify")
      .description(
        "verify the rules history (signatures, deployment, hash chain, snapshot head) and every decision's signature by a worker key enrolled at its revision; exit 1 when anything fails",
      )
      .option(
        "--worker-keys <keys>",
        "worker keys (N…) to accept besides the enrolled ones (env ARBITER_WORKER_KEYS)",
      )
      .option("--since <time>", "only decisions from this time: ISO-8601, or an age such as 15m, 2h, 7d"),
  ).action(async (flags: AuditFlags) => {
    const configured = resolveWorkerKeys(flags.workerKeys);
    const since = flags.since ? parseTime(flags.since, "--since") : undefined;
    const report = await read(flags, async (admin, server, keysFrom, store) => {
      const history = await admin.history();
      const state = await admin.stateAt();
      const snapshotProblem = await admin.snapshotProblem();
      const failures: {
        seq: number;
        index: number;
        decisionId: string | null;
        worker: string | null;
        revision: number | null;
        reason: string;
      }[] = [];
      let checked = 0;
      let failed = 0;
      for await (const stored of store.decisions.read(since ? { since } : {})) {
        checked++;
        const result = verifyDecision(stored.text, {
          deployment: state.deployment,
          workers: state.workers,
          configured,
        });
        if (result.valid) continue;
        failed++;
        if (failures.length < MAX_LISTED) {
          failures.push({
            seq: stored.seq,
            index: stored.index,
            decisionId: result.decision?.decisionId ?? null,
            worker: result.decision?.worker.publicKey ?? null,
            revision: result.decision?.revision ?? null,
            reason: result.reason,
          });
        }
      }
      const broken = history.find((e) => e.broken !== null);
      return {
        server,
        keysFrom,
        deployment: state.deployment,
        rules: {
          events: history.length,
          applied: history.filter((e) => e.applied).length,
          rejected: history.filter((e) => !e.applied).length,
          broken: broken ? { revision: broken.revision, reason: broken.broken } : null,
          snapshotProblem,
        },
        decisions: { checked, verified: checked - failed, failed },
        failures,
        valid: broken === undefined && snapshotProblem === null && failed === 0,
      };
    });
    emit(flags.json === true, report, () => {
      const lines = [
        `rules: ${report.rules.events} events of deployment ${report.deployment ?? "(none)"}, ${report.rules.applied} applied, ${report.rules.rejected} skipped`,
        report.rules.broken
          ? `  the chain BREAKS at revision ${report.rules.broken.revision}: ${report.rules.broken.reason}`
          : "  the chain is whole",
        ...(report.rules.snapshotProblem
          ? [`  the snapshot does not match: ${report.rules.snapshotProblem}`]
          : []),
        `decisions: ${report.decisions.checked} checked, ${report.decisions.verified} verified, ${report.decisions.failed} FAILED`,
        ...report.failures.map(
          (f) =>
            `  message ${f.seq} record ${f.index}${f.decisionId ? ` (${f.decisionId})` : ""}: ${f.reason}`,
        ),
      ];
      return lines.join("\n");
    });
    if (!report.valid) process.exitCode = ExitCode.Failed;
  });
  addReplayCommands(audit);
  return audit;
}
