import { readFileSync } from "node:fs";
import { decodePolicyRequest, type UnsignedDecisionV1, type UnsignedRuleEventV1 } from "@arbiter/protocol";
import { createSigner, generateKey, signJson } from "@arbiter/trust";
import { describe, expect, it } from "vitest";
import { compileRules } from "./compile.js";
import {
  type DecisionTrust,
  decideRequest,
  decisionRecord,
  rejectionRecord,
  trustRefusal,
} from "./decision.js";
import { parseRulesDocument } from "./document.js";
import { RevisionCache, replayDecision, whatIf } from "./replay.js";
import { initialRulesetState, type RulesetState, ruleEventHash, type StoredRuleEvent } from "./ruleset.js";

const admin = createSigner(generateKey("O").seed);
const DEPLOYMENT = "PRODUCTIONPRODUCTIONPRODUC";
const worker = { id: "w1", publicKey: createSigner(generateKey("N").seed).publicKey };
const FIXTURE = new URL("../../../test/data/wasmcloud-v1/start-component.json", import.meta.url);
const fixture = readFileSync(FIXTURE, "utf8").trim();
const NOW = new Date("2026-11-22T08:00:00.000Z");

// Revision 2 denies everything; 3 allows the fixture's image unless it is after noon; 4 enrolls a
// worker (same document); 5 allows only verified requests.
const documents = {
  denyAll: { version: 1, default: "deny", rules: [] },
  allowMorning: {
    version: 1,
    default: "deny",
    rules: [
      { id: "afternoon", effect: "deny", when: 'now > timestamp("2026-11-22T12:00:00Z")' },
      { id: "starts", effect: "allow", when: 'kind == "startComponent"' },
      { id: "watch", effect: "deny", mode: "dryrun", when: "true" },
    ],
  },
  verifiedOnly: {
    version: 1,
    default: "deny",
    rules: [{ id: "verified", effect: "allow", when: "trust.verified" }],
  },
};

function history(): StoredRuleEvent[] {
  const bodies = [
    { type: "deployment.created", payload: {} },
    { type: "ruleset.replaced", payload: { document: documents.denyAll } },
    { type: "ruleset.replaced", payload: { document: documents.allowMorning } },
    { type: "worker.enrolled", payload: { publicKey: worker.publicKey } },
    { type: "ruleset.replaced", payload: { document: documents.verifiedOnly } },
  ];
  const events: StoredRuleEvent[] = [];
  for (const body of bodies) {
    const last = events.at(-1);
    const event = {
      ...body,
      eventId: `e${events.length + 1}`,
      at: NOW.toISOString(),
      actor: admin.publicKey,
      previous: events.length,
      deployment: DEPLOYMENT,
      prev: last ? ruleEventHash(last.text) : null,
    } as UnsignedRuleEventV1;
    events.push({ revision: events.length + 1, text: signJson(event, admin) });
  }
  return events;
}

function cache(): RevisionCache {
  const revisions = new RevisionCache({ adminKeys: new Set([admin.publicKey]) });
  for (const event of history()) revisions.add(event);
  return revisions;
}

const revisions = cache();

function context(revision: number, now = NOW) {
  return {
    decisionId: `d${revision}-${now.getTime()}`,
    revision,
    deployment: DEPLOYMENT,
    now,
    worker,
    latencyMicros: 9,
  };
}

function request(text = fixture) {
  const decoded = decodePolicyRequest(Buffer.from(text));
  if (!decoded.ok) throw new Error(decoded.reason);
  return decoded.request;
}

const UNCHECKED: DecisionTrust = {
  verified: false,
  reasons: [],
  signed: false,
  issuer: null,
  tokenId: null,
  issuedAt: null,
};
const VERIFIED: DecisionTrust = { ...UNCHECKED, verified: true, signed: true, issuer: "C", tokenId: "t1" };

/** A record as the worker makes it, read back as the log stores it (JSON text). */
function decided(revision: number, now = NOW, trust?: DecisionTrust): UnsignedDecisionV1 {
  const ruleset = revisions.at(revision)!;
  const req = request();
  return stored(decisionRecord(req, decideRequest(req, ruleset, now, trust), context(revision, now), trust));
}

function stored(record: UnsignedDecisionV1): UnsignedDecisionV1 {
  return JSON.parse(JSON.stringify(record)) as UnsignedDecisionV1;
}

function replay(record: UnsignedDecisionV1) {
  return replayDecision(record, revisions.at(record.revision));
}

describe("RevisionCache", () => {
  it("folds each revision once, compiling a document only where an event made it", () => {
    expect(revisions.folded).toBe(5);
    expect(revisions.at(2)?.document?.default).toBe("deny");
    expect(revisions.at(3)?.compiled).not.toBeNull();
    expect(revisions.at(4)?.compiled).toBe(revisions.at(3)?.compiled);
    expect(revisions.at(5)?.compiled).not.toBe(revisions.at(4)?.compiled);
    expect(revisions.at(6)).toBeUndefined();
  });

  it("refuses an event out of order", () => {
    const fresh = new RevisionCache({ adminKeys: new Set([admin.publicKey]) });
    expect(() => fresh.add(history()[1]!)).toThrow(RangeError);
  });
});

describe("replayDecision", () => {
  it("reproduces requests under each revision, with their own now", () => {
    const records = [
      decided(2),
      decided(3),
      decided(3, new Date("2026-11-22T13:00:00.000Z")),
      decided(4),
      decided(5, NOW, VERIFIED),
      decided(5, NOW, UNCHECKED),
    ];
    expect(records.map((r) => r.permitted)).toEqual([false, true, false, true, true, false]);
    expect(records[1]!.dryRunRules).toEqual(["watch"]);
    for (const record of records) expect(replay(record)).toEqual({ match: true, check: "rules" });
  });

  it("names every field of an altered outcome, with both outcomes", () => {
    const record = { ...decided(2), permitted: true, message: "allowed" };
    const result = replay(record);
    expect(result).toMatchObject({
      match: false,
      check: "rules",
      differs: ["permitted", "message"],
      recorded: { permitted: true, message: "allowed" },
      replayed: { permitted: false, message: "no rule matched; default is deny" },
    });
  });

  it("catches a record that claims a revision whose rules did not decide it", () => {
    const result = replay({ ...decided(3), revision: 2 });
    expect(result.match).toBe(false);
    expect(replayDecision(decided(3), undefined)).toMatchObject({ match: false, differs: ["revision"] });
  });

  it("catches a record whose host or cache key is not its request's", () => {
    const result = replay({ ...decided(3), host: "NOTTHEHOST" });
    expect(result).toMatchObject({ match: false, differs: ["host"] });
  });

  it("uses the recorded trust result: a request replayed as verified that was not is a mismatch", () => {
    const record = decided(5, NOW, UNCHECKED);
    expect(replay({ ...record, trust: { ...record.trust, verified: true } })).toMatchObject({
      match: false,
      differs: ["permitted", "message", "decidingRule", "matchedRules"],
    });
  });

  it("reproduces re-evaluations", () => {
    const record = { ...decided(3), cause: "reevaluation" as const };
    expect(replay(record)).toEqual({ match: true, check: "rules" });
    expect(replay({ ...record, permitted: false })).toMatchObject({ match: false, differs: ["permitted"] });
  });

  it("re-runs the edge parsing of a request refused for its value", () => {
    const value = JSON.parse(fixture) as Record<string, unknown>;
    value["kind"] = "startTheWorld";
    const decoded = decodePolicyRequest(Buffer.from(JSON.stringify(value)));
    if (decoded.ok) throw new Error("expected a rejection");
    const record = stored(rejectionRecord({ ...decoded, requestId: decoded.requestId ?? "" }, context(3)));
    expect(replay(record)).toEqual({ match: true, check: "edge" });
    expect(replay({ ...record, rejection: "nothing wrong", message: "nothing wrong" })).toMatchObject({
      match: false,
      differs: ["message", "rejection"],
    });
  });

  it("catches a rejection of a request the edge accepts", () => {
    const req = request();
    const record = stored(
      rejectionRecord(
        { ok: false, requestId: req.requestId, reason: "bad", input: req.input, kind: req.kind },
        context(3),
      ),
    );
    expect(replay(record)).toMatchObject({
      match: false,
      check: "edge",
      differs: [
        "permitted",
        "message",
        "rejection",
        "decidingRule",
        "matchedRules",
        "dryRunRules",
        "cacheKey",
        "lineage",
      ],
    });
  });

  it("checks rejections of what the record does not keep as denials the rules had no part in", () => {
    const notJson = decodePolicyRequest(Buffer.from('{"requestId": "r1", '));
    const repeated = decodePolicyRequest(
      Buffer.from(fixture.replace('"kind":', '"kind": "unknown", "kind":')),
    );
    const tooMany = decodePolicyRequest(
      Buffer.from(`${fixture.trim().slice(0, -1)},"pad":[${Array(10_000).fill("{}")}]}`),
    );
    for (const decoded of [notJson, repeated, tooMany]) {
      if (decoded.ok) throw new Error("expected a rejection");
      const record = stored(rejectionRecord({ ...decoded, requestId: decoded.requestId ?? "" }, context(3)));
      expect(replay(record)).toEqual({ match: true, check: "edge-unrecorded" });
      expect(replay({ ...record, permitted: true })).toMatchObject({ match: false, differs: ["permitted"] });
    }
  });

  it("checks signature refusals against their trust result", () => {
    const req = request();
    const trust: DecisionTrust = { ...UNCHECKED, signed: true, reasons: ["bad-signature", "expired"] };
    const message = "the request's signature is not valid: no (bad-signature); old (expired); denied";
    const record = stored({
      ...decisionRecord(req, trustRefusal(message), context(5), trust),
      rejection: message,
    });
    expect(replay(record)).toEqual({ match: true, check: "signature" });
    expect(replay({ ...record, trust: { ...record.trust, verified: true } })).toMatchObject({
      match: false,
      differs: ["trust"],
    });
    expect(replay({ ...record, trust: { ...record.trust, reasons: ["replayed"] } })).toMatchObject({
      match: false,
      differs: ["trust"],
    });
  });

  it("checks a request left unanswered for its reply subject as a denial", () => {
    const req = request();
    const reason = 'the reply subject "x" is not an inbox (_INBOX.); not answered';
    const record = stored({
      ...rejectionRecord(
        { ok: false, requestId: req.requestId, reason, input: req.input, kind: req.kind },
        context(3),
      ),
      answered: false,
    });
    expect(replay(record)).toEqual({ match: true, check: "reply" });
  });
});

describe("whatIf", () => {
  const candidate = (document: object): RulesetState => {
    const parsed = parseRulesDocument(JSON.stringify(document));
    return { ...initialRulesetState(), document: parsed, compiled: compileRules(parsed) };
  };

  it("flips exactly the decisions whose permitted the candidate changes, naming its deciding rule", () => {
    const records = [decided(2), decided(3), decided(3, new Date("2026-11-22T13:00:00.000Z"))];
    const results = records.map((r) => whatIf(r, candidate(documents.allowMorning)));
    expect(results.map((r) => r.flipped)).toEqual([true, false, false]);
    expect(results[0]).toMatchObject({
      evaluated: true,
      candidate: { permitted: true, decidingRule: "starts" },
      recorded: { permitted: false, decidingRule: null },
      host: records[0]!.host,
    });
    expect(results[0]!.subject?.imageRef).toBe(request().subject?.imageRef);
  });

  it("leaves the records the rules had no part in alone", () => {
    const notJson = decodePolicyRequest(Buffer.from("{"));
    if (notJson.ok) throw new Error("expected a rejection");
    const record = stored(rejectionRecord({ ...notJson, requestId: "" }, context(3)));
    expect(whatIf(record, candidate({ version: 1, default: "allow", rules: [] }))).toMatchObject({
      evaluated: false,
      flipped: false,
    });
  });
});
