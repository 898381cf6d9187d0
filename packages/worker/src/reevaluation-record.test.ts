import { readFileSync } from "node:fs";
import { decodePolicyRequest, type UnsignedDecisionV1 } from "@arbiter/protocol";
import { compileRules, initialRulesetState, parseRulesDocument, type RulesetState } from "@arbiter/rules";
import { describe, expect, it } from "vitest";
import { projectDecision, type Reevaluation, reevaluate } from "./active-projection.js";
import { decisionRecord, encodeDecisionRecord } from "./decide.js";
import { reevaluationRecordEncoder as piecedEncoder, type ReevaluationScope } from "./reevaluation-record.js";

/** The encoder's records, each as the bytes its pieces make together. */
function reevaluationRecordEncoder(...args: Parameters<typeof piecedEncoder>) {
  const encode = piecedEncoder(...args);
  return (c: Reevaluation, decisionId: string): Buffer => {
    const { pieces, length } = encode(c, decisionId);
    const bytes = Buffer.concat(pieces);
    expect(bytes.length).toBe(length);
    return bytes;
  };
}

const fixture = (name: string) =>
  JSON.parse(
    readFileSync(new URL(`../../../test/data/wasmcloud-1.9.2/${name}.json`, import.meta.url), "utf8"),
  ) as Record<string, unknown>;

const scope: ReevaluationScope = {
  revision: 9,
  deployment: "01KAQ4Y0000000000000000000",
  worker: { id: 'w1 \u00e9"\\', publicKey: "NABNN3XIJODL7AFVQMGZUGLQZK7FTLAOAWZXUELUORK2NPCZOK4XGHWN" },
};
const now = new Date("2026-11-22T08:00:00.123Z");
const json = (input: unknown) => (input === null ? null : Buffer.from(JSON.stringify(input)));

/** What the worker wrote for a re-evaluation before this encoder: the generic record, encoded. */
function generic(c: Reevaluation, decisionId: string): Buffer {
  const record = decisionRecord(
    c.request,
    c.evaluation,
    { ...scope, decisionId, now: c.now, latencyMicros: 0 },
    c.trust,
  );
  record.cause = "reevaluation";
  return encodeDecisionRecord(record, json(c.request.input));
}

function ruleset(source: object): RulesetState {
  const document = parseRulesDocument(JSON.stringify({ version: 1, ...source }));
  return { ...initialRulesetState(), revision: scope.revision, document, compiled: compileRules(document) };
}

function reevaluated(
  request: Record<string, unknown>,
  rules: RulesetState,
  trust?: Partial<UnsignedDecisionV1["trust"]>,
) {
  const decoded = decodePolicyRequest(new TextEncoder().encode(JSON.stringify(request)));
  if (!decoded.ok) throw new Error(decoded.reason);
  const record: UnsignedDecisionV1 = decisionRecord(
    decoded.request,
    {
      permitted: true,
      message: "permitted",
      decidingRule: null,
      matchedRules: [],
      dryRunRules: [],
      errors: [],
    },
    { ...scope, decisionId: "d0", now, latencyMicros: 3 },
  );
  if (trust !== undefined) record.trust = { ...record.trust, ...trust };
  const projected = projectDecision(record, 1, null);
  if (projected.action !== "put") throw new Error("expected an entry");
  const again = reevaluate(projected.entry, rules, now);
  if (again === null) throw new Error("expected a re-evaluation");
  return again;
}

describe("reevaluationRecordEncoder", () => {
  const denyAll = ruleset({ default: "deny", rules: [] });
  const withRules = ruleset({
    default: "allow",
    rules: [
      { id: "watch", effect: "deny", mode: "dryrun", when: "true", message: "seen" },
      { id: "broken", effect: "deny", when: "input.nothing.here == 1" },
      {
        id: "no-unicode",
        effect: "deny",
        when: "true",
        message: 'revoked: \u2028 \ud83d\ude00 \\ "x" \u00e9',
      },
    ],
  });

  const requests: Array<[string, Record<string, unknown>]> = [
    ["a start-component request", fixture("start-component")],
    ["a start-provider request", fixture("start-provider")],
    ["a perform-invocation request", fixture("perform-invocation")],
    ["a signed start-component request", fixture("start-component-signed")],
    [
      "a request with escapes and non-ASCII text in its fields",
      (() => {
        const r = structuredClone(fixture("start-component")) as {
          host: { labels: Record<string, string>; lattice: string };
        };
        r.host.lattice = 'l\u00e4ttice "q" \\ \u0001';
        r.host.labels = { "z\u00e9": "\ud83d\ude00", "a\nb": "\u2029" };
        return r as unknown as Record<string, unknown>;
      })(),
    ],
  ];

  it.each(requests)("writes the generic encoder's bytes for %s", (_, request) => {
    const encode = reevaluationRecordEncoder(scope, json);
    for (const rules of [denyAll, withRules]) {
      const c = reevaluated(request, rules);
      expect(encode(c, "01KAQ50000000000000000000X").toString("utf8")).toBe(
        generic(c, "01KAQ50000000000000000000X").toString("utf8"),
      );
      // Twice: the second record of the request is built from what the first serialized.
      expect(encode(c, "01KAQ50000000000000000000Y").equals(generic(c, "01KAQ50000000000000000000Y"))).toBe(
        true,
      );
    }
  });

  it("writes a trusted entry's trust as the generic record does", () => {
    const encode = reevaluationRecordEncoder(scope, json);
    const c = reevaluated(fixture("start-component-signed"), withRules, {
      verified: true,
      reasons: ['signed by an issuer "trusted"'],
      signed: true,
      issuer: "AD4\u00e9",
      tokenId: "t-1",
    });
    expect(encode(c, "d1").toString("utf8")).toBe(generic(c, "d1").toString("utf8"));
  });

  it("writes a record over the limit without its request, saying how large it was, so that it can be stored", () => {
    const c = reevaluated(fixture("start-component"), withRules);
    const whole = generic(c, "d3");
    const encode = reevaluationRecordEncoder(scope, json, whole.length - 1);
    const cut = JSON.parse(encode(c, "d3").toString("utf8")) as UnsignedDecisionV1;

    expect(cut).toMatchObject({
      decisionId: "d3",
      cause: "reevaluation",
      permitted: false,
      request: null,
      truncated: { request: whole.length },
    });
    expect(reevaluationRecordEncoder(scope, json, whole.length)(c, "d3").equals(whole)).toBe(true);
  });

  it("falls back to the generic record when the request has no bytes of its own", () => {
    const encode = reevaluationRecordEncoder(scope, () => null);
    const c = reevaluated(fixture("start-component"), denyAll);
    const record = decisionRecord(
      c.request,
      c.evaluation,
      { ...scope, decisionId: "d2", now, latencyMicros: 0 },
      c.trust,
    );
    record.cause = "reevaluation";

    expect(JSON.parse(encode(c, "d2").toString("utf8"))).toEqual(record);
  });
});
