import { ErrorCode, type ScanReportV1, type WorkerStatusV1 } from "@arbiter/protocol";
import { describe, expect, it } from "vitest";
import { missingFor, parseWaitTimeout, waitHook } from "./apply-wait.js";

const DEPLOYMENT = "AAAAAAAAAAAAAAAAAAAAAAAAAA";
const OTHER_DEPLOYMENT = "BBBBBBBBBBBBBBBBBBBBBBBBBB";
const EVENT = "a".repeat(64);
const target = { revision: 5, deployment: DEPLOYMENT, event: EVENT };

function worker(id: string, revision: number, broken: WorkerStatusV1["broken"] = null): WorkerStatusV1 {
  return {
    id,
    publicKey: `N${"A".repeat(55)}`,
    state: "ready",
    reason: null,
    revision,
    adminKeys: [],
    deployment: DEPLOYMENT,
    enrolled: true,
    broken,
    stats: {},
  };
}

function report(overrides: Partial<ScanReportV1> = {}): ScanReportV1 {
  return {
    revision: 5,
    deployment: DEPLOYMENT,
    event: EVENT,
    entries: 3,
    changed: 1,
    overrides: 1,
    startedAt: "2026-01-01T00:00:00.000Z",
    finishedAt: "2026-01-01T00:00:00.010Z",
    worker: { id: "w1", publicKey: `N${"A".repeat(55)}` },
    ...overrides,
  };
}

describe("what rules apply --wait still waits for", () => {
  it("names the live workers behind the revision, and nothing once all serve it and its report is there", () => {
    expect(missingFor(target, [worker("w1", 5), worker("w2", 4)], null)).toEqual({
      lagging: [{ id: "w2", revision: 4 }],
      broken: [],
      report: true,
    });
    expect(missingFor(target, [worker("w1", 5), worker("w2", 6)], report())).toEqual({
      lagging: [],
      broken: [],
      report: false,
    });
  });

  it("does not count a worker serving another deployment's rules, whatever its revision", () => {
    const elsewhere = { ...worker("w1", 9), deployment: OTHER_DEPLOYMENT };
    expect(missingFor(target, [elsewhere], report()).lagging).toEqual([
      { id: "w1", revision: 9, deployment: OTHER_DEPLOYMENT },
    ]);
  });

  it("does not take a report left by another deployment, or of another revision, for this one", () => {
    expect(missingFor(target, [], report({ deployment: OTHER_DEPLOYMENT })).report).toBe(true);
    expect(missingFor(target, [], report({ deployment: null })).report).toBe(true);
    expect(missingFor(target, [], report({ revision: 4 })).report).toBe(true);
  });

  it("does not take a report that names another rule event (stored before the revision was written) for it", () => {
    expect(missingFor(target, [], report({ event: "0".repeat(64) })).report).toBe(true);
    expect(missingFor(target, [], report()).report).toBe(false);
  });

  it("tells a worker whose rules history is broken from one that is only behind", () => {
    const broken = { revision: 3, reason: "the event at revision 3 is not the one this worker applied" };
    expect(missingFor(target, [worker("w1", 3, broken), worker("w2", 4)], null)).toMatchObject({
      lagging: [{ id: "w2", revision: 4 }],
      broken: [{ id: "w1", ...broken }],
    });
    // A worker from before the field answers without it: behind, not broken.
    const { broken: _, ...older } = worker("w3", 4);
    expect(missingFor(target, [older], null)).toMatchObject({ lagging: [{ id: "w3" }], broken: [] });
  });
});

describe("--wait-timeout", () => {
  it("takes milliseconds, seconds (also bare) and minutes", () => {
    expect(parseWaitTimeout("500ms")).toBe(500);
    expect(parseWaitTimeout("30s")).toBe(30_000);
    expect(parseWaitTimeout("45")).toBe(45_000);
    expect(parseWaitTimeout("2m")).toBe(120_000);
  });

  it("refuses what is no positive duration, naming the flag", () => {
    for (const bad of ["0s", "-1s", "1h", "soon", "1.5s", ""]) {
      expect(() => parseWaitTimeout(bad)).toThrow(/--wait-timeout/);
    }
  });

  it("needs --wait, and is read before anything is written", () => {
    expect(() => waitHook({ waitTimeout: "5s" }, "arbiter", "arbiter.workers.status")).toThrow(
      expect.objectContaining({ code: ErrorCode.InvalidUsage }),
    );
    expect(() => waitHook({ wait: true, waitTimeout: "never" }, "arbiter", "s")).toThrow(
      expect.objectContaining({ code: ErrorCode.InvalidConfig }),
    );
    const none = waitHook({}, "arbiter", "arbiter.workers.status");
    expect(none.written).toBeUndefined();
    expect(none.enforced()).toBeNull();
  });
});
