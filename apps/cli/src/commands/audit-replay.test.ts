import { readFileSync } from "node:fs";
import { decodePolicyRequest } from "@arbiter/protocol";
import {
  compileRules,
  decideRequest,
  decisionRecord,
  initialRulesetState,
  parseRulesDocument,
} from "@arbiter/rules";
import { createMemoryStore, createRulesAdmin, signDecisionBatch } from "@arbiter/store";
import { createSigner, generateKey } from "@arbiter/trust";
import { encodeDecisionRecord } from "@arbiter/worker";
import { describe, expect, it } from "vitest";
import { MAX_GROUPS, replayThreads, runReplay, runWhatIf, THREADS_AFTER } from "./audit-replay.js";

const FIXTURE = new URL("../../../../test/data/wasmcloud-v1/start-component.json", import.meta.url);
const fixture = JSON.parse(readFileSync(FIXTURE, "utf8")) as Record<string, unknown> & {
  request: Record<string, unknown>;
};

/** A memory store with allow-all rules and `count` decisions, each for a component of its own. */
async function history(count: number, alter?: (text: string, i: number) => string) {
  const store = createMemoryStore();
  const adminSigner = createSigner(generateKey("O").seed);
  const admin = createRulesAdmin({ store, signer: adminSigner });
  const { revision } = await admin.apply(
    parseRulesDocument(JSON.stringify({ version: 1, default: "allow", rules: [] })),
  );
  const ruleset = await admin.stateAt(revision);
  const signer = createSigner(generateKey("N").seed);
  const lines = [];
  for (let i = 0; i < count; i++) {
    const bytes = Buffer.from(
      JSON.stringify({
        ...fixture,
        requestId: `r${i}`,
        request: { ...fixture.request, componentId: `c${i}`, imageRef: `ghcr.io/example/c${i}:1` },
      }),
    );
    const decoded = decodePolicyRequest(bytes);
    if (!decoded.ok) throw new Error(decoded.reason);
    const now = new Date();
    const record = decisionRecord(decoded.request, decideRequest(decoded.request, ruleset, now), {
      decisionId: `d${i}`,
      revision,
      deployment: ruleset.deployment,
      now,
      worker: { id: "w", publicKey: signer.publicKey },
      latencyMicros: 1,
    });
    const text = encodeDecisionRecord(record, bytes).toString();
    lines.push({ decisionId: record.decisionId, body: Buffer.from(alter ? alter(text, i) : text) });
  }
  for (let at = 0; at < lines.length; at += 32) {
    await store.decisions.append(signDecisionBatch(lines.slice(at, at + 32), signer));
  }
  return { store, trust: { adminKeys: new Set([adminSigner.publicKey]) } };
}

describe("runReplay", () => {
  it("names the one altered record and counts a record that is not a DecisionV1 as a mismatch", async () => {
    const { store, trust } = await history(40, (text, i) =>
      i === 7
        ? text.replace('"permitted":true', '"permitted":false')
        : i === 9
          ? '{"decisionId":"d9"}'
          : text,
    );
    const report = await runReplay(store, trust, {});
    expect(report).toMatchObject({ decisions: 40, matched: 38, mismatches: 2 });
    expect(report.mismatched.map((m) => m.decisionId)).toEqual(["d7", null]);
    expect(report.mismatched[1]?.reason).toMatch(/not a DecisionV1/);
  });

  it("lists the mismatches of every chunk in stream order, whatever chunk they fall in", async () => {
    const altered = new Set([5, 255, 256, 300, 599]);
    const { store, trust } = await history(600, (text, i) =>
      altered.has(i) ? text.replace('"permitted":true', '"permitted":false') : text,
    );
    const report = await runReplay(store, trust, {});
    expect(report).toMatchObject({ decisions: 600, matched: 595, mismatches: 5 });
    expect(report.mismatched.map((m) => m.decisionId)).toEqual([...altered].map((i) => `d${i}`));
    expect(report.mismatched.map((m) => [m.seq, m.index])).toEqual(
      [...altered].map((i) => [Math.floor(i / 32) + 1, i % 32]),
    );
  });

  it("refuses a --threads that is not a count, naming it", () => {
    expect(replayThreads("2")).toEqual({ count: 2, after: 0 });
    expect(replayThreads("0")).toEqual({ count: 0, after: 0 });
    expect(replayThreads(undefined)).toMatchObject({ after: THREADS_AFTER });
    expect(() => replayThreads("two")).toThrow(/--threads "two"/);
    expect(() => replayThreads("-1")).toThrow(/--threads/);
  });

  it("reports a record of a revision the history does not have, reading the history again once for it", async () => {
    const { store, trust } = await history(3, (text, i) =>
      i === 1 ? text.replace('"revision":2', '"revision":99') : text,
    );
    let reads = 0;
    const rules = {
      ...store.rules,
      read: (range?: { from?: number; to?: number }) => {
        reads++;
        return store.rules.read(range);
      },
    };
    const report = await runReplay({ rules, decisions: store.decisions }, trust, {});
    expect(report.mismatched).toMatchObject([{ decisionId: "d1", revision: 99, differs: ["revision"] }]);
    expect(reads).toBe(2);
  });
});

describe("runWhatIf", () => {
  it("lists at most the groups with the most flips, and counts them all", async () => {
    const { store } = await history(MAX_GROUPS + 20);
    const deny = parseRulesDocument(JSON.stringify({ version: 1, default: "deny", rules: [] }));
    const report = await runWhatIf(
      store.decisions,
      { ...initialRulesetState(), document: deny, compiled: compileRules(deny) },
      {},
      { candidateName: "deny.json", maxFlipped: null },
    );
    expect(report.flipped).toBe(MAX_GROUPS + 20);
    expect(report.groups).toEqual({ rules: 1, subjects: MAX_GROUPS + 20, hosts: 1 });
    expect(report.bySubject).toHaveLength(MAX_GROUPS);
    expect(report.byRule).toEqual([
      { rule: null, flipped: MAX_GROUPS + 20, toPermitted: 0, toDenied: MAX_GROUPS + 20 },
    ]);
  });
});
