import { describe, expect, it } from "vitest";
import { runArbiter } from "./support/cli.js";

// The benchmark's figures are never asserted (this machine is shared); only that it runs on its own
// servers, gets every answer right and finds every answer in the decision log.
describe("arbiter bench", () => {
  it("measures the echo and the worker, with every answer right and recorded", async () => {
    const { code, stdout, stderr } = await runArbiter(
      ["bench", "--duration", "1", "--warmup", "0.2", "--concurrency", "8", "--json"],
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
      ratio: { throughput: number };
      target: { throughputRatio: number; met: boolean };
    };
    for (const phase of [report.echo, report.worker]) {
      expect(phase.answers).toBeGreaterThan(0);
      expect(phase.errors.total).toBe(0);
      expect(phase.mismatches).toBe(0);
    }
    expect(report.worker.exit.code).toBe(0);
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
  });
});
