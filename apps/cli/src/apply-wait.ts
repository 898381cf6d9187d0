import { setTimeout as delay } from "node:timers/promises";
import { ArbiterError, ErrorCode, type ScanReportV1, type WorkerStatusV1 } from "@arbiter/protocol";
import { type ActiveIndex, openJetStreamActiveIndex } from "@arbiter/store";
import type { NatsConnection } from "@nats-io/nats-core";
import { changesAgreement } from "./changes-agreement.js";
import { reportError, WrittenNotEnforcedError } from "./output.js";
import { gatherWorkers } from "./worker-status.js";

/** `--wait-timeout` when not given. */
export const DEFAULT_WAIT_TIMEOUT_MS = 30_000;

/** How often the scan report is looked for (one KV read each time). */
const REPORT_POLL_MS = 20;

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000 };

/**
 * Parses `--wait-timeout`: a positive number of `ms`, `s` or `m` (`500ms`, `30s`, `2m`); a bare
 * number is seconds. Throws INVALID_CONFIG naming the flag otherwise.
 */
export function parseWaitTimeout(value: string): number {
  const match = /^(\d+)(ms|s|m)?$/.exec(value.trim());
  const ms = match ? Number(match[1]) * DURATION_UNITS[match[2] ?? "s"]! : 0;
  if (!match || ms <= 0 || !Number.isSafeInteger(ms)) {
    throw new ArbiterError(
      ErrorCode.InvalidConfig,
      `--wait-timeout ${JSON.stringify(value)}: expected a positive duration such as 500ms, 30s or 2m`,
    );
  }
  return ms;
}

/** What the wait is for: the revision just written, in its deployment. */
export interface WaitTarget {
  readonly revision: number;
  readonly deployment: string;
  /** The SHA-256 (hex) of the rule event written: the revision's scan report names it. */
  readonly event: string;
  /** Where the workers answer with their status (`ResourceNames.statusSubject`). */
  readonly statusSubject: string;
  readonly prefix: string;
  readonly timeoutMs: number;
  /** How many workers answered before the write (asked about the signing key). */
  readonly answeredBefore: number;
}

/** What was still missing at one look: workers behind the revision, workers that cannot reach it, the report. */
export interface Missing {
  /** Live workers serving an earlier revision, or the rules of another deployment (named then). */
  readonly lagging: readonly {
    readonly id: string;
    readonly revision: number;
    readonly deployment?: string;
  }[];
  /** Live workers whose rules history stopped chaining: they never reach the revision. */
  readonly broken: readonly { readonly id: string; readonly revision: number; readonly reason: string }[];
  /** True while no scan report of the revision, in its deployment, is there. */
  readonly report: boolean;
}

/**
 * Compares the workers' answers and the report found (if any) with the target: pure, so the rules
 * of the wait are tested on their own. A report of another deployment (left in the bucket from
 * before the rules stream was made again) is not the revision's.
 */
export function missingFor(
  target: Pick<WaitTarget, "revision" | "deployment" | "event">,
  workers: readonly WorkerStatusV1[],
  report: ScanReportV1 | null,
): Missing {
  return {
    lagging: workers.flatMap((w) => {
      if (w.broken) return [];
      // A worker still on a rules stream that was made again serves its old deployment's revisions.
      const foreign = w.deployment != null && w.deployment !== target.deployment;
      if (foreign) return [{ id: w.id, revision: w.revision, deployment: w.deployment ?? "" }];
      return w.revision < target.revision ? [{ id: w.id, revision: w.revision }] : [];
    }),
    broken: workers.flatMap((w) => (w.broken ? [{ id: w.id, ...w.broken }] : [])),
    report: !isReportOf(target, report),
  };
}

function isReportOf(
  target: Pick<WaitTarget, "revision" | "deployment" | "event">,
  report: ScanReportV1 | null,
): report is ScanReportV1 {
  return (
    report !== null &&
    report.revision === target.revision &&
    report.deployment === target.deployment &&
    report.event === target.event
  );
}

/** How long enforcing a revision took, from the acknowledged write. */
export interface Enforcement {
  readonly revision: number;
  /** The live workers at the end, each serving the revision (or a later one). */
  readonly workers: readonly { readonly id: string; readonly revision: number }[];
  /** Milliseconds until the last live worker's answer that it serves the revision arrived. */
  readonly servedMs: number;
  /** Milliseconds until the revision's scan report was there: every override out. */
  readonly overridesMs: number;
  /** Overrides the revision caused (published on the changes topic). */
  readonly overrides: number;
  /** Cached decisions re-evaluated. */
  readonly entries: number;
  /** The worker that re-evaluated the revision. */
  readonly scannedBy: ScanReportV1["worker"];
}

/**
 * Waits until every live worker (one answering on the status subject) serves `target.revision`
 * and that revision's scan report is in the active index, so every override it causes is out.
 * Throws NO_WORKER_ANSWERED at once when no worker answers and none did before the write,
 * CHAIN_BROKEN at once when a worker's rules history does not chain (the revision would never be
 * served nor re-evaluated), and WAIT_TIMEOUT naming what was still missing at `timeoutMs`.
 */
export async function waitForEnforcement(nc: NatsConnection, target: WaitTarget): Promise<Enforcement> {
  const started = performance.now();
  const elapsed = () => Math.round(performance.now() - started);
  const deadline = started + target.timeoutMs;
  const index = await openJetStreamActiveIndex(nc, { prefix: target.prefix, create: false });
  const seen: {
    report: ScanReportV1 | null;
    overridesMs: number | null;
    workers: WorkerStatusV1[];
    servedMs: number | null;
    failure: ArbiterError | null;
  } = { report: null, overridesMs: null, workers: [], servedMs: null, failure: null };
  const over = () => seen.failure !== null || performance.now() > deadline;

  const watchReport = async () => {
    while (!over()) {
      const found = await readReport(index, target.revision);
      if (isReportOf(target, found)) {
        seen.report = found;
        seen.overridesMs = elapsed();
        return;
      }
      await delay(REPORT_POLL_MS);
    }
  };
  const watchWorkers = async () => {
    let everAnswered = target.answeredBefore > 0;
    while (!over()) {
      const answers = await gatherWorkers(nc, target.statusSubject);
      const workers = answers.map((answer) => answer.status);
      seen.workers = workers;
      everAnswered ||= workers.length > 0;
      const missing = missingFor(target, workers, null);
      if (missing.broken.length > 0) {
        seen.failure = brokenError(target, missing.broken);
        return;
      }
      if (!everAnswered) {
        seen.failure = new WrittenNotEnforcedError(
          ErrorCode.NoWorkerAnswered,
          `rules written at revision ${target.revision}, but no worker answered on ${target.statusSubject}: nothing serves them (start \`arbiter worker\` or \`arbiter up\`)`,
          { revision: target.revision, deployment: target.deployment },
        );
        return;
      }
      if (workers.length > 0 && missing.lagging.length === 0) {
        // Served since the last of these answers arrived, not since the gathering ended.
        seen.servedMs = Math.round(Math.max(...answers.map((a) => a.receivedAt)) - started);
        return;
      }
    }
  };
  await Promise.all([watchReport(), watchWorkers()]);
  const { report, overridesMs, workers, servedMs, failure } = seen;
  if (failure !== null) throw failure;
  if (servedMs === null || report === null || overridesMs === null) {
    throw timeoutError(target, workers, servedMs !== null, report !== null);
  }
  const agreement = changesAgreement(workers);
  if (agreement.problem !== null) {
    throw new WrittenNotEnforcedError(
      ErrorCode.ChangesDisagree,
      `rules written at revision ${target.revision}, served by every worker and its ${report.overrides} override(s) out after ${overridesMs} ms, but not enforced on every host: ${agreement.problem}`,
      { revision: target.revision, deployment: target.deployment },
    );
  }
  return {
    revision: target.revision,
    workers: workers
      .map((w) => ({ id: w.id, revision: w.revision }))
      .sort((a, b) => a.id.localeCompare(b.id)),
    servedMs,
    overridesMs,
    overrides: report.overrides,
    entries: report.entries,
    scannedBy: report.worker,
  };
}

async function readReport(index: ActiveIndex, revision: number): Promise<ScanReportV1 | null> {
  try {
    return await index.readScanReport(revision);
  } catch {
    // A read that fails is a report not seen yet; the deadline decides.
    return null;
  }
}

function brokenError(target: WaitTarget, broken: Missing["broken"]): ArbiterError {
  const { revision, deployment } = target;
  const which = broken.map((b) => `worker ${b.id} stops at revision ${b.revision} (${b.reason})`).join("; ");
  return new WrittenNotEnforcedError(
    ErrorCode.ChainBroken,
    `rules written at revision ${revision}, but the rules history is broken for the workers: ${which}. They apply nothing after the break, so revision ${revision} is neither served nor re-evaluated; see \`arbiter rules history\` and \`arbiter status\``,
    { revision, deployment },
  );
}

function timeoutError(
  target: WaitTarget,
  workers: readonly WorkerStatusV1[],
  served: boolean,
  reported: boolean,
): ArbiterError {
  const missing: string[] = [];
  if (!served) {
    const lagging = missingFor(target, workers, null).lagging;
    missing.push(
      workers.length === 0
        ? `no worker answered on ${target.statusSubject}`
        : `${lagging.map((w) => `worker ${w.id} is at revision ${w.revision}${w.deployment ? ` of deployment ${w.deployment}` : ""}`).join(", ")} (waiting for revision ${target.revision} of deployment ${target.deployment})`,
    );
  }
  if (!reported) {
    missing.push(
      `no scan report of revision ${target.revision} appeared: its re-evaluation of the cached decisions has not finished, so overrides may still be missing`,
    );
  }
  return new WrittenNotEnforcedError(
    ErrorCode.WaitTimeout,
    `rules written at revision ${target.revision}, but not enforced within ${target.timeoutMs} ms: ${missing.join("; ")}`,
    { revision: target.revision, deployment: target.deployment },
  );
}

/** The flags of a change that may wait for its enforcement. */
export interface WaitFlags {
  wait?: boolean;
  waitTimeout?: string;
  /** Under `--json` stderr carries only the JSON error: no progress line there. */
  json?: boolean;
}

/** What a change command needs for `--wait`: the hook `change` runs after the write, and its result. */
export interface WaitHook {
  /** Undefined without `--wait`. */
  readonly written:
    | ((
        nc: NatsConnection,
        applied: { readonly revision: number; readonly deployment: string; readonly eventHash: string },
        confirmation: { readonly acceptedBy: readonly string[]; readonly refusedBy: readonly string[] },
      ) => Promise<void>)
    | undefined;
  /**
   * Runs the write; with `--wait`, Ctrl-C from its start on says what was written (or that the
   * write may have happened) and exits 5 instead of ending the command silently.
   */
  writing<T extends { readonly revision: number; readonly deployment: string }>(
    body: () => Promise<T>,
  ): Promise<T>;
  /** The enforcement waited for, once the hook has run; null without `--wait`. */
  enforced(): Enforcement | null;
}

/**
 * The `--wait` of a change under `prefix`, read before anything is written: throws INVALID_USAGE
 * for `--wait-timeout` without `--wait`, INVALID_CONFIG for a timeout that is no duration.
 */
export function waitHook(flags: WaitFlags, prefix: string, statusSubject: string): WaitHook {
  if (flags.wait !== true) {
    if (flags.waitTimeout !== undefined) {
      throw new ArbiterError(ErrorCode.InvalidUsage, "--wait-timeout needs --wait");
    }
    return { written: undefined, writing: (body) => body(), enforced: () => null };
  }
  const timeoutMs =
    flags.waitTimeout === undefined ? DEFAULT_WAIT_TIMEOUT_MS : parseWaitTimeout(flags.waitTimeout);
  let enforced: Enforcement | null = null;
  let wrote: { readonly revision: number; readonly deployment: string } | null = null;
  // Ctrl-C while waiting stops the wait, not the change: say that it was written, and where.
  const interrupted = (signal: NodeJS.Signals) => {
    const stopped =
      wrote === null
        ? new ArbiterError(
            ErrorCode.WaitInterrupted,
            `stopped (${signal}) while the rules were being written: \`arbiter rules history\` shows whether they were`,
          )
        : new WrittenNotEnforcedError(
            ErrorCode.WaitInterrupted,
            `rules written at revision ${wrote.revision} of deployment ${wrote.deployment}; stopped waiting for their enforcement (${signal}): \`arbiter status\` shows which workers serve it`,
            { revision: wrote.revision, deployment: wrote.deployment },
          );
    process.exit(reportError(stopped, flags.json === true));
  };
  const disarm = () => {
    process.off("SIGINT", interrupted);
    process.off("SIGTERM", interrupted);
  };
  return {
    writing: async (body) => {
      process.once("SIGINT", interrupted);
      process.once("SIGTERM", interrupted);
      try {
        const result = await body();
        wrote = result;
        return result;
      } catch (err) {
        disarm();
        throw err;
      }
    },
    written: async (nc, applied, confirmation) => {
      wrote = applied;
      if (flags.json !== true) {
        process.stderr.write(
          `arbiter: rules written at revision ${applied.revision}; waiting up to ${timeoutMs} ms for every worker to serve them and their overrides to be out\n`,
        );
      }
      try {
        enforced = await waitForEnforcement(nc, {
          revision: applied.revision,
          deployment: applied.deployment,
          event: applied.eventHash,
          statusSubject,
          prefix,
          timeoutMs,
          answeredBefore: confirmation.acceptedBy.length + confirmation.refusedBy.length,
        });
      } finally {
        disarm();
      }
    },
    enforced: () => enforced,
  };
}

/** The line saying how long enforcing took. */
export function describeEnforcement(e: Enforcement): string {
  const workers = e.workers.length === 1 ? "1 worker serves" : `${e.workers.length} workers serve`;
  const overrides = e.overrides === 1 ? "1 override" : `${e.overrides} overrides`;
  return `enforced: ${workers} it after ${e.servedMs} ms (${e.workers.map((w) => w.id).join(", ")}); ${overrides} out after ${e.overridesMs} ms (${e.entries} cached decisions re-evaluated by ${e.scannedBy.id})`;
}
