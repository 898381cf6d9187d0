import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { opaPolicyServerBin } from "./peers/peers-cache.js";
import { runArbiter } from "./support/cli.js";

interface OpaPhase {
  instances: number;
  queueGroup: string | null;
  answers: number;
  errors: { total: number };
  mismatches: number;
  requestIdNotEchoed: number;
  wrongAnswersByPayload: Record<string, number>;
}

type OpaReport =
  | { status: "measured"; single: OpaPhase; queue: OpaPhase; differsFromArbiter: unknown[] }
  | { status: "skipped"; reason: string };

function opaInCache(): boolean {
  try {
    opaPolicyServerBin();
    return true;
  } catch {
    return false;
  }
}

// The benchmark's figures are never asserted (this machine is shared); only that it runs on its own
// servers, gets every answer right and finds every answer in the decision log.
describe("arbiter bench", () => {
  it("measures the echo and the worker (and the OPA server when cached), with every answer right and recorded", async () => {
    const { code, stdout, stderr } = await runArbiter(
      [
        "bench",
        "--duration",
        "1",
        "--warmup",
        "0.2",
        "--concurrency",
        "8",
        "--opa-instances",
        "2",
        "--no-convergence",
        "--replay-decisions",
        "0",
        "--json",
      ],
      { ARBITER_LOG_LEVEL: "warn" },
    );
    expect(code, stderr).toBe(0);
    const report = JSON.parse(stdout) as {
      echo: { answers: number; answersPerSecond: number; errors: { total: number }; mismatches: number };
      worker: {
        answers: number;
        answersPerSecond: number;
        errors: { total: number };
        mismatches: number;
        exit: { code: number | null };
        decisionLog: { recorded: number; answered: number; ok: boolean };
      };
      signedWorker: {
        answers: number;
        answersPerSecond: number;
        errors: { total: number };
        mismatches: number;
        exit: { code: number | null };
      };
      ratio: { throughput: number; signedThroughput: number };
      target: { throughputRatio: number; met: boolean };
      opa: OpaReport;
      guarantees: Record<string, string>;
    };
    for (const phase of [report.echo, report.worker, report.signedWorker]) {
      expect(phase.answers).toBeGreaterThan(0);
      expect(phase.errors.total).toBe(0);
      expect(phase.mismatches).toBe(0);
    }
    expect(report.worker.exit.code).toBe(0);
    expect(report.signedWorker.exit.code).toBe(0);
    expect(report.ratio.signedThroughput).toBeCloseTo(
      report.signedWorker.answersPerSecond / report.worker.answersPerSecond,
      2,
    );
    // At least: a request answered after the generator gave up on it is recorded, not counted.
    expect(report.worker.decisionLog.ok).toBe(true);
    expect(report.worker.decisionLog.recorded).toBeGreaterThanOrEqual(report.worker.decisionLog.answered);
    // The comparison is computed from the two measurements it reports, whatever they are.
    expect(report.ratio.throughput).toBeGreaterThan(0);
    expect(report.ratio.throughput).toBeCloseTo(
      report.worker.answersPerSecond / report.echo.answersPerSecond,
      2,
    );
    expect(report.target.met).toBe(
      report.worker.answersPerSecond >= report.target.throughputRatio * report.echo.answersPerSecond,
    );
    expect(Object.keys(report.guarantees).sort()).toEqual(["echo", "opa", "signedWorker", "worker"]);
    if (!opaInCache()) {
      expect(report.opa.status).toBe("skipped");
      return;
    }
    if (report.opa.status !== "measured") throw new Error(`OPA phases not measured: ${report.opa.reason}`);
    expect(report.opa.single).toMatchObject({ instances: 1, queueGroup: null });
    expect(report.opa.queue).toMatchObject({ instances: 2, queueGroup: expect.any(String) });
    for (const phase of [report.opa.single, report.opa.queue]) {
      expect(phase.answers).toBeGreaterThan(0);
      expect(phase.errors.total).toBe(0);
      // The example's server replies with a new random requestId: counted, not a mismatch.
      expect(phase.mismatches).toBe(0);
      expect(phase.requestIdNotEchoed).toBe(phase.answers);
      expect(phase.wrongAnswersByPayload).toEqual({});
    }
    expect(report.opa.differsFromArbiter).toEqual([]);
  });

  it("skips the OPA phases, saying how to build the server, when the peers cache has none", async () => {
    const empty = mkdtempSync(join(tmpdir(), "arbiter-bench-peers-"));
    try {
      const { code, stdout, stderr } = await runArbiter(
        [
          "bench",
          "--duration",
          "0.3",
          "--warmup",
          "0",
          "--concurrency",
          "4",
          "--no-convergence",
          "--replay-decisions",
          "0",
          "--json",
        ],
        { ARBITER_LOG_LEVEL: "warn", ARBITER_PEERS_DIR: empty },
      );
      expect(code, stderr).toBe(0);
      const report = JSON.parse(stdout) as { worker: { answers: number }; opa: OpaReport };
      expect(report.worker.answers).toBeGreaterThan(0);
      expect(report.opa.status).toBe("skipped");
      expect(report.opa.status === "skipped" && report.opa.reason).toContain("npm run peers -- --only opa");
      expect(stderr).toContain("OPA phases skipped");
      expect(stderr).toContain("npm run peers -- --only opa");
    } finally {
      rmSync(empty, { recursive: true, force: true });
    }
  });

  it("skips the OPA phases on --no-opa", async () => {
    const { code, stdout, stderr } = await runArbiter(
      [
        "bench",
        "--duration",
        "0.3",
        "--warmup",
        "0",
        "--concurrency",
        "4",
        "--no-opa",
        "--no-convergence",
        "--replay-decisions",
        "0",
      ],
      { ARBITER_LOG_LEVEL: "warn" },
    );
    expect(code, stderr).toBe(0);
    expect(stdout).toContain("opa: phases skipped (--no-opa)");
    expect(stdout).not.toMatch(/^opa x1/m);
  });

  it("measures revocation convergence beside bare overrides, every flipped entry holding its new outcome, then Arbiter alone with every override checked by the observer", async () => {
    const { code, stdout, stderr } = await runArbiter(
      [
        "bench",
        "--convergence-only",
        "--convergence-decisions",
        "120",
        "--convergence-hosts",
        "6",
        "--convergence-workers",
        "1,2",
        "--convergence-changes",
        "shared,per-host",
        "--json",
      ],
      { ARBITER_LOG_LEVEL: "warn" },
    );
    expect(code, stderr).toBe(0);
    const report = JSON.parse(stdout) as {
      worker?: unknown;
      convergence: {
        target: { maxMs: number; overridesPerSecond: number };
        runs: {
          workers: number;
          changes: string;
          hosts: number;
          decisions: number;
          flipped: number;
          revision: number;
          arbiter: Figures;
          baseline: Figures;
          ratioMax: number;
          lastPublished: {
            arbiterMs: number;
            arbiterFirstMs: number;
            baselineMs: number;
            arbiterOverridesPerSecond: number;
            baselineOverridesPerSecond: number;
            observed: { arbiter: number; baseline: number };
          };
          check: { flippedWithNewOutcome: number; othersUntouched: number; ok: boolean };
          workerStats: Record<string, Record<string, number>>;
          alone: {
            revision: number;
            flipped: number;
            arbiter: AloneFigures;
            baseline: AloneFigures;
            overridesByWorker: Record<string, number>;
            check: { overridesChecked: number; ok: boolean };
          };
        }[];
      };
    };
    type AloneFigures = {
      firstMs: number;
      lastMs: number;
      overridesPerSecond: number;
      observed: number;
      matched: number;
      cpuMs: {
        workers: number | null;
        natsServer: number | null;
        observer: number | null;
        bench: number | null;
      };
    };
    type Figures = {
      overridesApplied: number;
      perHostMs: { p50: number; max: number; min: number };
      overridesPerSecond: number;
      deliveriesPerSecond: number;
    };
    expect(report.worker).toBeUndefined();
    expect(report.convergence.target).toEqual({ maxMs: 1000, overridesPerSecond: 20_000 });
    expect(report.convergence.runs.map((r) => [r.workers, r.changes])).toEqual([
      [1, "shared"],
      [1, "per-host"],
      [2, "shared"],
      [2, "per-host"],
    ]);
    for (const run of report.convergence.runs) {
      expect(run).toMatchObject({ hosts: 6, decisions: 120, flipped: 60 });
      expect(run.check).toEqual({ flippedWithNewOutcome: 60, othersUntouched: 60, ok: true });
      for (const figures of [run.arbiter, run.baseline]) {
        expect(figures.overridesApplied).toBe(60);
        expect(figures.perHostMs.min).toBeLessThanOrEqual(figures.perHostMs.p50);
        expect(figures.perHostMs.p50).toBeLessThanOrEqual(figures.perHostMs.max);
        expect(figures.overridesPerSecond).toBeGreaterThan(0);
      }
      expect(run.lastPublished.observed).toEqual({ arbiter: 60, baseline: 60 });
      expect(run.lastPublished.arbiterMs).toBeGreaterThan(0);
      expect(run.lastPublished.arbiterFirstMs).toBeGreaterThan(0);
      expect(run.lastPublished.arbiterFirstMs).toBeLessThanOrEqual(run.lastPublished.arbiterMs);
      expect(run.lastPublished.baselineMs).toBeGreaterThan(0);
      expect(run.lastPublished.arbiterOverridesPerSecond).toBeGreaterThan(0);
      expect(run.lastPublished.baselineOverridesPerSecond).toBeGreaterThan(0);
      expect(Object.keys(run.workerStats)).toHaveLength(run.workers);
      const overrides = Object.values(run.workerStats).reduce(
        (sum, s) => sum + (s["fanoutOverrides"] ?? 0),
        0,
      );
      expect(overrides).toBe(60);
      // Arbiter alone: a second rules change, heard by the observer only, every override checked.
      expect(run.alone).toMatchObject({ revision: run.revision + 1, flipped: 60 });
      expect(run.alone.check).toEqual({ overridesChecked: 60, ok: true });
      for (const figures of [run.alone.arbiter, run.alone.baseline]) {
        expect(figures).toMatchObject({ observed: 60, matched: 60 });
        expect(figures.firstMs).toBeGreaterThan(0);
        expect(figures.firstMs).toBeLessThanOrEqual(figures.lastMs);
        expect(figures.overridesPerSecond).toBeGreaterThan(0);
        expect(Object.keys(figures.cpuMs).sort()).toEqual(["bench", "natsServer", "observer", "workers"]);
      }
      expect(Object.values(run.alone.overridesByWorker).reduce((a, b) => a + b, 0)).toBe(60);
    }
  }, 240_000);

  it("refuses a --convergence-changes it does not know, naming it, before starting anything", async () => {
    const { code, stderr } = await runArbiter([
      "bench",
      "--convergence-only",
      "--convergence-changes",
      "shared,each",
    ]);

    expect(code).toBe(2);
    expect(stderr).toContain('"each" is neither shared nor per-host');
  });
});
