import { describe, expect, it } from "vitest";
import { runArbiter } from "./support/cli.js";

// The replay benchmark's figures are never asserted (this machine is shared): only that it writes the
// history it says, reads all of it bare and through replay, and finds every decision reproduced.
describe("arbiter bench --replay-only", () => {
  it("reports the bare read and the replay of the same stream, every decision reproduced", async () => {
    const { code, stdout, stderr } = await runArbiter(
      [
        "bench",
        "--replay-only",
        "--replay-decisions",
        "500",
        "--replay-revisions",
        "4",
        "--replay-threads",
        "2",
        "--json",
      ],
      { ARBITER_LOG_LEVEL: "warn" },
    );
    expect(code, stderr).toBe(0);
    const { replay } = JSON.parse(stdout) as {
      replay: {
        settings: {
          decisions: number;
          revisions: number;
          decisionsPerBatch: number;
          threads: { count: number; after: number };
        };
        write: { messages: number; seconds: number };
        bareRead: { decisions: number; decisionsPerSecond: number; cpuMicrosPerDecision: number };
        replay: {
          decisions: number;
          decisionsPerSecond: number;
          cpuMicrosPerDecision: number;
          mismatches: number;
          revisionsFolded: number;
        };
        ratio: number;
        target: { ratio: number; decisionsPerSecond: number; met: boolean };
      };
    };
    // Two worker threads from the first record, as `audit replay --threads 2`.
    expect(replay.settings).toEqual({
      decisions: 500,
      revisions: 4,
      decisionsPerBatch: 32,
      threads: { count: 2, after: 0 },
    });
    // Four documents at 125 decisions each: 4 batches of 32 (the last of 29) per revision.
    expect(replay.write.messages).toBe(16);
    expect(replay.bareRead.decisions).toBe(500);
    expect(replay.replay).toMatchObject({ decisions: 500, mismatches: 0, revisionsFolded: 6 });
    expect(replay.ratio).toBeCloseTo(
      replay.replay.decisionsPerSecond / replay.bareRead.decisionsPerSecond,
      3,
    );
    expect(replay.target).toMatchObject({ ratio: 0.5, decisionsPerSecond: 100_000 });
  });

  it("says the replay phase is skipped with --replay-decisions 0", async () => {
    const { code, stdout } = await runArbiter(["bench", "--replay-only", "--replay-decisions", "0"], {
      ARBITER_LOG_LEVEL: "warn",
    });
    expect(code).toBe(0);
    expect(stdout).toContain("replay: skipped (--replay-decisions 0)");
  });
});
