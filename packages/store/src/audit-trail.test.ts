import type { UnsignedDecisionV1 } from "@arbiter/protocol";
import { createSigner, generateKey, type Signer, signJson } from "@arbiter/trust";
import { beforeAll, describe, expect, it } from "vitest";
import { createTrailVerifier, type DecisionBounds, type TrailVerifier } from "./audit-trail.js";
import { sealedDecisionTexts, signDecisionBatch } from "./decision-batch.js";
import { createMemoryStore } from "./memory-store.js";
import { createRulesAdmin } from "./rules-admin.js";

const admin = createSigner(generateKey("O").seed);
const worker = createSigner(generateKey("N").seed);
const streams = { rules: "ARBITER_RULES", decisions: "ARBITER_DECISIONS" };
const whole: DecisionBounds = { firstSeq: 1, lastSeq: null, retainedFrom: 1 };

let events: string[] = [];
let deployment = "";

beforeAll(async () => {
  const store = createMemoryStore();
  const rules = createRulesAdmin({ store, signer: admin });
  deployment = (await rules.apply({ version: 1, default: "allow", rules: [] })).deployment;
  await rules.enrollWorker(worker.publicKey);
  await rules.apply({ version: 1, default: "deny", rules: [] });
  events = [];
  for await (const e of store.rules.read()) events.push(e.text);
});

/** A decision record at `revision`, as a worker writes it. */
function record(id: string, revision: number, signer: Signer = worker): UnsignedDecisionV1 {
  return {
    decisionId: id,
    requestId: id,
    lattice: "default",
    host: "N",
    kind: "startComponent",
    cacheKey: "startComponent:x",
    lineage: "v1",
    request: { note: '"record":{"not":"the envelope"}' },
    rejection: null,
    permitted: true,
    message: "ok",
    decidingRule: null,
    matchedRules: [],
    dryRunRules: [],
    ruleErrors: [],
    revision,
    deployment,
    evaluatedAt: "2026-01-01T00:00:00.000Z",
    worker: { id: "w", publicKey: signer.publicKey },
    trust: { verified: false, reasons: [] },
    cause: "request",
    latencyMicros: 1,
  };
}

/** A message of the decision log as read: its records sealed. */
function message(records: UnsignedDecisionV1[], signer: Signer = worker): string[] {
  const batch = signDecisionBatch(
    records.map((r) => ({ decisionId: r.decisionId, body: Buffer.from(JSON.stringify(r)) })),
    signer,
  );
  return sealedDecisionTexts(batch.lines, batch.signature);
}

function verifier(): TrailVerifier {
  return createTrailVerifier({ streams, adminKeys: [admin.publicKey] });
}

/** Feeds the rules, then the messages (seq → sealed texts, in the order given). */
function audit(
  messages: Array<[number, string[]]>,
  options: { rules?: Array<[number, string]>; bounds?: DecisionBounds } = {},
) {
  const v = verifier();
  for (const [seq, text] of options.rules ?? events.map((t, i): [number, string] => [i + 1, t])) {
    v.ruleEvent(seq, text);
  }
  v.startDecisions(options.bounds ?? whole);
  for (const [seq, texts] of messages) for (const [i, text] of texts.entries()) v.decision(seq, i, text);
  return v.report();
}

const brief = (r: ReturnType<typeof audit>) =>
  r.failures.map((f) => [f.stream, f.seq, f.index, f.decisionId ?? f.eventId, f.reason]);

describe("verifying the audit trail", () => {
  it("passes an untouched history: every rule event chained, every record in its place", () => {
    const r = audit([
      [1, message([record("a", 3), record("b", 3), record("c", 3)])],
      [2, message([record("d", 3)])],
    ]);
    expect(r).toMatchObject({
      valid: true,
      failures: [],
      deployment,
      rules: { events: 4, applied: 4, failed: 0, broken: null },
      decisions: { messages: 2, checked: 4, verified: 4, failed: 0, missing: 0, firstSeq: 1, lastSeq: 2 },
      retention: null,
    });
  });

  it("names a rule event signed by a key that is no admin's, and one whose signature does not hold", () => {
    const stranger = createSigner(generateKey("O").seed);
    const forged = signJson(
      { ...JSON.parse(events[2]!), signature: undefined, actor: stranger.publicKey },
      stranger,
    );
    const tampered = events[2]!.replace(worker.publicKey, createSigner(generateKey("N").seed).publicKey);
    const r = audit([], {
      rules: [
        [1, events[0]!],
        [2, events[1]!],
        [3, tampered],
        [4, forged],
      ],
    });
    expect(r.valid).toBe(false);
    const tamperedId = JSON.parse(tampered).eventId;
    expect(brief(r)).toEqual([
      [streams.rules, 3, null, tamperedId, `the signature by ${admin.publicKey} is not valid`],
      [
        streams.rules,
        4,
        null,
        tamperedId,
        `signed by ${stranger.publicKey}, which is not an accepted admin key`,
      ],
    ]);
  });

  it("names the first rule event out of chain, and counts those after it", () => {
    const r = audit([], {
      rules: [
        [1, events[0]!],
        [2, events[1]!],
        [3, events[1]!],
        [4, events[2]!],
      ],
    });
    expect(r.rules).toMatchObject({ failed: 1, afterBreak: 1, broken: { revision: 3 } });
    expect(brief(r)).toEqual([
      [
        streams.rules,
        3,
        null,
        JSON.parse(events[1]!).eventId,
        expect.stringContaining("signed to follow revision 1"),
      ],
    ]);
  });

  it("names a rule event missing from the history, not the event after it", () => {
    const r = audit([], {
      rules: [
        [1, events[0]!],
        [3, events[2]!],
      ],
    });
    expect(brief(r)).toEqual([
      [
        streams.rules,
        2,
        null,
        null,
        "rule event 2 is missing (the rules stream keeps every event: it was deleted, or left out)",
      ],
    ]);
  });

  it("names missing messages between the first and the last, and at either bound", () => {
    const one = (id: string) => message([record(id, 3)]);
    expect(
      brief(
        audit([
          [1, one("a")],
          [4, one("b")],
        ]),
      ),
    ).toEqual([
      [streams.decisions, 2, null, null, "messages 2–3 are missing (deleted from the stream, or left out)"],
    ]);
    const bounded = audit([[2, one("a")]], { bounds: { firstSeq: 1, lastSeq: 3, retainedFrom: 1 } });
    expect(brief(bounded)).toEqual([
      [streams.decisions, 1, null, null, "message 1 is missing (deleted from the stream, or left out)"],
      [streams.decisions, 3, null, null, "message 3 is missing (deleted from the stream, or left out)"],
    ]);
    expect(bounded.decisions.missing).toBe(2);
  });

  it("takes records before the stream's first sequence for past retention, not missing", () => {
    const r = audit([[5, message([record("a", 3)])]], {
      bounds: { firstSeq: 5, lastSeq: 5, retainedFrom: 5 },
    });
    expect(r).toMatchObject({
      valid: true,
      retention: { stream: streams.decisions, firstSeq: 5, note: "records before seq 5 are past retention" },
    });
    // Records that aged out while they were read: the bounds move, and nothing is missing.
    const v = verifier();
    for (const [i, t] of events.entries()) v.ruleEvent(i + 1, t);
    v.startDecisions({ firstSeq: 3, lastSeq: 6, retainedFrom: 3 });
    v.decision(6, 0, message([record("a", 3)])[0]!);
    v.updateBounds({ firstSeq: 6, retainedFrom: 6 });
    expect(v.report()).toMatchObject({ valid: true, retention: { firstSeq: 6 } });
  });

  it("names a record left out of its message, and a message out of order", () => {
    const [a, b, c] = message([record("a", 3), record("b", 3), record("c", 3)]);
    const v = verifier();
    for (const [i, t] of events.entries()) v.ruleEvent(i + 1, t);
    v.startDecisions(whole);
    v.decision(1, 0, a!);
    v.decision(1, 2, c!);
    v.decision(2, 0, message([record("d", 3)])[0]!);
    v.decision(3, 0, message([record("e", 3)])[0]!);
    v.decision(2, 0, message([record("f", 3)])[0]!);
    expect(brief(v.report())).toEqual([
      [streams.decisions, 1, 1, null, "record 1 of message 1 is missing (its batch holds 3)"],
      [streams.decisions, 2, 0, "f", "out of order: message 2 comes after message 3"],
    ]);
    const tail = audit([[1, [a!, b!]]]);
    expect(brief(tail)).toEqual([
      [streams.decisions, 1, 2, null, "record 2 of message 1 is missing (its batch holds 3)"],
    ]);
  });

  it("names a message that is a copy of an earlier one, put in the place of one left out", () => {
    // Whoever edits an export (or holds a worker credential) drops message 2 and fills its place
    // with a genuine batch signed once and stored already: every record would verify on its own.
    const first = message([record("a", 3), record("b", 3)]);
    const r = audit([
      [1, first],
      [2, first],
      [3, message([record("c", 3)])],
    ]);
    expect(r.valid).toBe(false);
    expect(brief(r)).toEqual([
      [streams.decisions, 2, 0, "a", "a copy of message 1 (the same batch, signed once, stored again)"],
      [streams.decisions, 2, 1, "b", "a copy of message 1 (the same batch, signed once, stored again)"],
    ]);
    expect(r.decisions).toMatchObject({ messages: 3, checked: 5, verified: 3, failed: 2, missing: 0 });
  });

  it("names a record whose revision goes back in its batch, or is past the rules", () => {
    const r = audit([
      [1, message([record("a", 4), record("b", 3)])],
      [2, message([record("c", 9)])],
    ]);
    expect(brief(r)).toEqual([
      [
        streams.decisions,
        1,
        1,
        "b",
        "its revision 3 goes back from revision 4 of the record before it in its batch",
      ],
      [streams.decisions, 2, 0, "c", "names revision 9, past the last rule event (4)"],
    ]);
  });

  it("names a record sealed by a key that was never enrolled, and one altered after signing", () => {
    const stranger = createSigner(generateKey("N").seed);
    const [genuine] = message([record("a", 3)]);
    const altered = genuine!.replace('"permitted":true', '"permitted":false');
    const r = audit([
      [1, [altered]],
      [2, message([record("x", 3, stranger)], stranger)],
    ]);
    expect(brief(r)).toEqual([
      [streams.decisions, 1, 0, "a", `the batch signature by ${worker.publicKey} does not verify`],
      [streams.decisions, 2, 0, "x", `signed by worker key ${stranger.publicKey}, which was never enrolled`],
    ]);
  });

  it("checks a batch's signature once, and still every record's proof against it", () => {
    const [a, b, c] = message([record("a", 3), record("b", 3), record("c", 3)]);
    const altered = b!.replace('"permitted":true', '"permitted":false');
    const r = audit([[1, [a!, altered, c!]]]);
    expect(r.decisions).toMatchObject({ checked: 3, verified: 2, failed: 1 });
    expect(brief(r)).toEqual([
      [streams.decisions, 1, 1, "b", `the batch signature by ${worker.publicKey} does not verify`],
    ]);
  });

  it("names an unsigned line by the decision id it claims", () => {
    const r = audit([[1, [JSON.stringify(record("unsigned", 3))]]]);
    expect(brief(r)).toEqual([[streams.decisions, 1, 0, "unsigned", "not a sealed decision record"]]);
  });

  it("lists at most maxListed failures and counts them all", () => {
    const v = createTrailVerifier({ streams, adminKeys: [admin.publicKey], maxListed: 2 });
    v.startDecisions(whole);
    for (let seq = 1; seq <= 5; seq++) v.decision(seq, 0, "{}");
    const r = v.report();
    expect(r.failures).toHaveLength(2);
    expect(r.failureCount).toBe(5);
    expect(r.decisions.failed).toBe(5);
  });
});
