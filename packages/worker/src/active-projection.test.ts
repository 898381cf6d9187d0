import { readFileSync } from "node:fs";
import { decodePolicyRequest, type UnsignedDecisionV1 } from "@arbiter/protocol";
import { compileRules, initialRulesetState, parseRulesDocument, type RulesetState } from "@arbiter/rules";
import { describe, expect, it } from "vitest";
import { legacyStartActor } from "../../../test/support/fixtures.js";
import { overrideFor, projectDecision, reevaluate, revocationFor } from "./active-projection.js";
import { decisionRecord, rejectionRecord } from "./decide.js";

const FIXTURE = new URL("../../../test/data/wasmcloud-v1/start-component.json", import.meta.url);
const bytes = new TextEncoder().encode(readFileSync(FIXTURE, "utf8").trim());
const context = {
  decisionId: "01KAQ4Z0000000000000000000",
  revision: 3,
  deployment: "01KAQ4Y0000000000000000000",
  now: new Date("2026-11-22T08:00:00.000Z"),
  worker: { id: "w1", publicKey: "NABNN3XIJODL7AFVQMGZUGLQZK7FTLAOAWZXUELUORK2NPCZOK4XGHWN" },
  latencyMicros: 12,
};
const denied = {
  permitted: false,
  message: "denied",
  decidingRule: null,
  matchedRules: [],
  dryRunRules: [],
  errors: [],
};

function decided(overrides: Partial<UnsignedDecisionV1> = {}): UnsignedDecisionV1 {
  const decoded = decodePolicyRequest(bytes);
  if (!decoded.ok) throw new Error(decoded.reason);
  return { ...decisionRecord(decoded.request, denied, context), ...overrides };
}

function rules(effect: "allow" | "deny", revision = 4): RulesetState {
  const document = parseRulesDocument(JSON.stringify({ version: 1, default: effect, rules: [] }));
  return { ...initialRulesetState(), revision, document, compiled: compileRules(document) };
}

describe("projectDecision", () => {
  it("makes an answered request the entry of its host and cache key", () => {
    const decision = decided();
    const projection = projectDecision(decision, 7, null);
    expect(projection).toMatchObject({
      action: "put",
      entry: {
        requestId: decision.requestId,
        host: decision.host,
        cacheKey: decision.cacheKey,
        permitted: false,
        revision: 3,
        seq: 7,
        request: decision.request,
      },
    });
  });

  it("keeps the claims' expiresAt, for re-evaluating the entry when they expire", () => {
    const decision = decided();
    const request = structuredClone(decision.request) as { request: { claims: unknown } };
    request.request.claims = {
      publicKey: "M",
      issuer: "A",
      issuedAt: "1",
      expiresAt: 1_900_000_000,
      expired: false,
    };
    expect(projectDecision({ ...decision, request }, 1, null)).toMatchObject({
      entry: { expiresAt: 1_900_000_000 },
    });
    expect(projectDecision(decision, 1, null)).toMatchObject({ entry: { expiresAt: null } });
  });

  it("keeps the expiresAt of a 0.82 request's source, where its claims are", () => {
    const request = legacyStartActor();
    request.source.expiresAt = 1_900_000_000;
    const decoded = decodePolicyRequest(new TextEncoder().encode(JSON.stringify(request)));
    if (!decoded.ok) throw new Error(decoded.reason);
    const decision = decisionRecord(decoded.request, denied, context);
    expect(projectDecision(decision, 1, null)).toMatchObject({ entry: { expiresAt: 1_900_000_000 } });
    // A 1.x request naming an `action` too is read as 1.x, as the decoder reads it.
    const v1 = decided();
    const mixed = { ...(v1.request as object), action: "start_actor", source: { expiresAt: 1 } };
    expect(projectDecision({ ...v1, request: mixed }, 1, null)).toMatchObject({ entry: { expiresAt: null } });
  });

  it("leaves out what no host cached: an unanswered request, one without a cache key", () => {
    expect(projectDecision(decided({ answered: false }), 1, null)).toMatchObject({ action: "skip" });
    expect(projectDecision(decided({ cacheKey: "" }), 1, null)).toMatchObject({ action: "skip" });
  });

  it("takes a later request for the same key, and no second decision under the entry's request id", () => {
    const first = projectDecision(decided(), 1, null);
    if (first.action !== "put") throw new Error("expected an entry");
    expect(projectDecision(decided({ requestId: "newer", decisionId: "d2" }), 2, first.entry)).toMatchObject({
      action: "put",
      entry: { requestId: "newer", seq: 2 },
    });
    expect(projectDecision(decided({ decisionId: "copy", permitted: true }), 2, first.entry)).toMatchObject({
      action: "skip",
      reason: "request id already indexed",
    });
    // The same decision delivered again is the same entry.
    expect(projectDecision(decided(), 1, first.entry)).toMatchObject({ action: "put" });
    expect(projectDecision(decided({ requestId: "older" }), 0, { ...first.entry, seq: 5 })).toMatchObject({
      action: "skip",
    });
  });

  it("leaves a re-evaluation to the revoker that made it, which puts the entry after its override is out", () => {
    const first = projectDecision(decided(), 1, null);
    if (first.action !== "put") throw new Error("expected an entry");
    const again = decided({
      cause: "reevaluation",
      permitted: true,
      message: "ok",
      revision: 5,
      decisionId: "d9",
    });
    // Projected, the new outcome would be in the index before the override was sent: a scan done
    // again after the revoker died would find nothing to change and send nothing.
    expect(projectDecision(again, 9, first.entry)).toEqual({ action: "skip", reason: "re-evaluation" });
    expect(projectDecision(again, 9, null)).toMatchObject({ action: "skip" });
  });
});

describe("reevaluate", () => {
  const entryOf = (decision: UnsignedDecisionV1) => {
    const projection = projectDecision(decision, 1, null);
    if (projection.action !== "put") throw new Error("expected an entry");
    return projection.entry;
  };

  it("finds the entries whose outcome the new rules change, and only those", () => {
    const entry = entryOf(decided());
    const allowed = reevaluate(entry, rules("allow"), new Date());
    expect(allowed).toMatchObject({ changed: true, evaluation: { permitted: true } });
    const same = rules("deny");
    const unchanged = reevaluate(
      { ...entry, message: reevaluate(entry, same, new Date())!.evaluation.message },
      same,
      new Date(),
    );
    expect(unchanged?.changed).toBe(false);
  });

  it("keeps the clock value it evaluated at, for the re-evaluation's record (replay uses evaluatedAt as now)", () => {
    const at = new Date("2026-11-23T10:00:00.000Z");
    expect(reevaluate(entryOf(decided()), rules("allow"), at)?.now).toBe(at);
  });

  it("never re-decides a request refused at the edge: its refusal does not depend on the rules", () => {
    const refused = rejectionRecord(
      { ok: false, requestId: "r", reason: "bad input", input: null, kind: "startComponent" },
      context,
    );
    expect(
      reevaluate(entryOf({ ...refused, cacheKey: "startComponent:x" }), rules("allow"), new Date()),
    ).toBeNull();
  });

  it("builds an override with both request id spellings and a string message, and its revocation record", () => {
    const entry = entryOf(decided());
    const again = reevaluate(entry, rules("allow"), new Date())!;
    expect(overrideFor(entry, again.evaluation)).toEqual({
      requestId: entry.requestId,
      request_id: entry.requestId,
      permitted: true,
      message: again.evaluation.message,
    });
    expect(revocationFor(entry, again.evaluation, 4, "2026-11-22T08:00:00.000Z")).toMatchObject({
      requestId: entry.requestId,
      from: { permitted: false, message: "denied" },
      to: { permitted: true },
      revision: 4,
    });
  });
});
