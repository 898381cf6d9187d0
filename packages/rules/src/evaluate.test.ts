import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { compileRules, type EvaluationFacts, evaluate, type RulesDocumentInput } from "./index.js";

type RuleInput = RulesDocumentInput["rules"][number];

function rules(defaultEffect: "allow" | "deny", ...list: RuleInput[]) {
  return compileRules({ version: 1, default: defaultEffect, rules: list });
}

const baseFacts: EvaluationFacts = {
  kind: "startComponent",
  host: { publicKey: "NHOST", lattice: "default", labels: { "hostcore.os": "linux" } },
  subject: { id: "hello", imageRef: "ghcr.io/x/hello:0.1.0", annotations: {}, maxInstances: 2 },
  claims: { publicKey: "MCOMP", issuer: "AISSUER", issuedAt: "1714506509", expiresAt: null, expired: false },
  invocation: null,
  input: { kind: "startComponent", request: { maxInstances: 2, ratio: 1.5 } },
  now: new Date("2025-01-01T00:00:00Z"),
  trust: { verified: true, reasons: [] },
};

describe("evaluate: combining", () => {
  it("lets a matching enforced deny win over a matching allow, whatever the order", () => {
    const compiled = rules(
      "allow",
      { id: "allow-all", effect: "allow", when: "true", message: "fine" },
      { id: "deny-linux", effect: "deny", when: 'host.labels["hostcore.os"] == "linux"' },
    );
    expect(evaluate(compiled, baseFacts)).toEqual({
      permitted: false,
      message: 'denied by rule "deny-linux"',
      decidingRule: "deny-linux",
      matchedRules: ["allow-all", "deny-linux"],
      dryRunRules: [],
      errors: [],
    });
  });

  it("lets a matching allow win over the default, with the rule's message", () => {
    const compiled = rules(
      "deny",
      { id: "no-match", effect: "deny", when: "kind == 'performInvocation'" },
      { id: "signed", effect: "allow", when: "claims != null", message: "signed" },
    );
    expect(evaluate(compiled, baseFacts)).toMatchObject({
      permitted: true,
      message: "signed",
      decidingRule: "signed",
      matchedRules: ["signed"],
    });
  });

  it("the first matching rule of the winning effect decides", () => {
    const compiled = rules(
      "deny",
      { id: "a", effect: "allow", when: "true" },
      { id: "b", effect: "allow", when: "true", message: "from b" },
    );
    expect(evaluate(compiled, baseFacts)).toMatchObject({
      decidingRule: "a",
      message: 'allowed by rule "a"',
    });
  });

  it.each([
    ["deny", false],
    ["allow", true],
  ] as const)("applies default %s when nothing matches", (defaultEffect, permitted) => {
    const compiled = rules(defaultEffect, { id: "never", effect: "allow", when: "false" });
    expect(evaluate(compiled, baseFacts)).toEqual({
      permitted,
      message: `no rule matched; default is ${defaultEffect}`,
      decidingRule: null,
      matchedRules: [],
      dryRunRules: [],
      errors: [],
    });
  });

  it("reports dry-run rules but never enforces them", () => {
    const compiled = rules(
      "allow",
      { id: "would-deny", effect: "deny", mode: "dryrun", when: "true", message: "no" },
      { id: "would-allow", effect: "allow", mode: "dryrun", when: "true" },
    );
    expect(evaluate(compiled, baseFacts)).toEqual({
      permitted: true,
      message: "no rule matched; default is allow",
      decidingRule: null,
      matchedRules: [],
      dryRunRules: ["would-deny", "would-allow"],
      errors: [],
    });
    const denyDefault = rules("deny", { id: "would-allow", effect: "allow", mode: "dryrun", when: "true" });
    expect(evaluate(denyDefault, baseFacts)).toMatchObject({
      permitted: false,
      dryRunRules: ["would-allow"],
    });
  });

  it("counts a run-time error as not matching and records it with its position", () => {
    const compiled = rules(
      "allow",
      { id: "issuer", effect: "deny", when: 'claims.issuer == "AISSUER"' },
      { id: "fine", effect: "allow", when: "true" },
    );
    const result = evaluate(compiled, { ...baseFacts, claims: null });
    expect(result).toMatchObject({ permitted: true, decidingRule: "fine", matchedRules: ["fine"] });
    expect(result.errors).toEqual([
      { ruleId: "issuer", message: expect.stringMatching(/^column 7: .*issuer/) },
    ]);
  });

  it("counts a non-boolean result of a dyn condition as an error, not a match", () => {
    const compiled = rules("allow", { id: "count", effect: "deny", when: "input.request.maxInstances" });
    expect(evaluate(compiled, baseFacts)).toEqual({
      permitted: true,
      message: "no rule matched; default is allow",
      decidingRule: null,
      matchedRules: [],
      dryRunRules: [],
      errors: [{ ruleId: "count", message: "when evaluated to a value of type int, not a bool" }],
    });
  });

  it("records errors of dry-run rules too", () => {
    const compiled = rules("deny", {
      id: "dry",
      effect: "deny",
      mode: "dryrun",
      when: "invocation.function == 'x'",
    });
    expect(evaluate(compiled, baseFacts).errors.map((e) => e.ruleId)).toEqual(["dry"]);
  });

  it("records at most 512 characters of an error that quotes what the host sent, and its length", () => {
    const compiled = rules("deny", { id: "table", effect: "allow", when: '{"trusted": true}[subject.id]' });
    const id = `x${"\u{1F600}".repeat(100_000)}`;
    const [error] = evaluate(compiled, { ...baseFacts, subject: { ...baseFacts.subject!, id } }).errors;
    expect(error?.ruleId).toBe("table");
    expect(error!.message.length).toBeLessThanOrEqual(512);
    expect(error!.message).toMatch(/^column \d+: field not found: x\u{1F600}+…\(\d+ characters\)$/u);
    // A short one is kept whole.
    expect(evaluate(compiled, baseFacts).errors).toEqual([
      { ruleId: "table", message: expect.stringMatching(/^column \d+: field not found: hello$/) },
    ]);
  });
});

describe("evaluate: values", () => {
  const matches = (when: string, facts: EvaluationFacts = baseFacts) => {
    const result = evaluate(rules("deny", { id: "r", effect: "allow", when }), facts);
    expect(result.errors).toEqual([]);
    return result.permitted;
  };

  it("treats integral JSON numbers as CEL int and others as double", () => {
    expect(matches("subject.maxInstances > 1")).toBe(true);
    expect(matches("subject.maxInstances == 2 && type(subject.maxInstances) == int")).toBe(true);
    expect(matches("input.request.maxInstances + 1 == 3")).toBe(true);
    expect(matches("type(input.request.ratio) == double && input.request.ratio > 1.2")).toBe(true);
    expect(matches("subject.maxInstances < 2.5")).toBe(true);
  });

  it("binds maps, lists, null and strings as CEL values", () => {
    expect(matches('"hostcore.os" in host.labels && host.labels["hostcore.os"] == "linux"')).toBe(true);
    expect(matches("trust.verified && size(trust.reasons) == 0 && invocation == null")).toBe(true);
    expect(matches("input.kind == kind && input.request.ratio == 1.5")).toBe(true);
    expect(matches("has(input.request.maxInstances) && !has(input.request.missing)")).toBe(true);
  });

  it("binds now as a timestamp", () => {
    expect(matches('now == timestamp("2025-01-01T00:00:00Z") && now.getFullYear() == 2025')).toBe(true);
    expect(matches("int(now) == 1735689600")).toBe(true);
  });

  it("guards on null before using claims.expiresAt", () => {
    const when = "claims.expiresAt != null && int(now) > claims.expiresAt";
    expect(matches(when)).toBe(false);
    const expired = { ...baseFacts, claims: { ...baseFacts.claims!, expiresAt: 1700000000 } };
    expect(matches(when, expired)).toBe(true);
  });

  it("records, not throws, when a timestamp cannot be made", () => {
    const compiled = rules(
      "deny",
      {
        id: "bad-string",
        effect: "allow",
        when: "claims.expiresAt == null && now > timestamp(claims.issuedAt)",
      },
      { id: "bad-now", effect: "allow", when: "now > timestamp('2000-01-01T00:00:00Z')" },
      { id: "no-now", effect: "allow", when: "kind == 'startComponent'" },
    );
    const result = evaluate(compiled, { ...baseFacts, now: new Date(Number.NaN) });
    expect(result.errors.map((e) => e.ruleId)).toEqual(["bad-string", "bad-now"]);
    expect(result).toMatchObject({ permitted: true, decidingRule: "no-now" });
  });

  it("survives input that is not plain JSON", () => {
    const cyclic: Record<string, unknown> = { a: 1 };
    cyclic["self"] = cyclic;
    const compiled = rules(
      "deny",
      { id: "uses-input", effect: "allow", when: "input.a == 1" },
      { id: "plain", effect: "allow", when: "kind != ''" },
    );
    const result = evaluate(compiled, { ...baseFacts, input: cyclic });
    expect(result.errors.map((e) => e.ruleId)).toEqual(["uses-input"]);
    const nullProto = Object.assign(Object.create(null) as object, { a: 1 });
    expect(evaluate(compiled, { ...baseFacts, input: nullProto }).matchedRules).toEqual([
      "uses-input",
      "plain",
    ]);
  });
});

describe("evaluate: determinism", () => {
  // Expressions over every variable, including some that fail at run time for some facts.
  const expressions = [
    'kind == "startComponent"',
    'kind in ["startComponent", "startProvider"] && claims != null && claims.issuer == "AISSUER"',
    "claims != null && claims.expired",
    "claims.issuer.startsWith('A')",
    "subject.maxInstances > 1",
    "subject != null && size(subject.annotations) > 0",
    'host.labels.exists(k, k.startsWith("hostcore."))',
    "invocation != null && invocation.function == 'handle'",
    "invocation.interface.contains('http')",
    "input.request.claims.issuer == 'AISSUER'",
    "has(input.request) && input.request.maxInstances > 0",
    'now > timestamp("2024-01-01T00:00:00Z")',
    "int(now) % 2 == 0",
    "trust.verified || size(trust.reasons) > 2",
    "claims.expiresAt != null && int(now) > claims.expiresAt",
    "input.request.maxInstances",
  ];
  const stringMap = fc.dictionary(fc.string({ maxLength: 12 }), fc.string({ maxLength: 12 }), { maxKeys: 4 });
  const factsArb: fc.Arbitrary<EvaluationFacts> = fc.record({
    kind: fc.oneof(
      fc.constantFrom("startComponent", "startProvider", "performInvocation", "unknown"),
      fc.string(),
    ),
    host: fc.record({ publicKey: fc.string(), lattice: fc.string(), labels: stringMap }),
    subject: fc.option(
      fc.record({
        id: fc.string(),
        imageRef: fc.string(),
        annotations: stringMap,
        maxInstances: fc.integer(),
      }),
      { nil: null },
    ),
    claims: fc.option(
      fc.record({
        publicKey: fc.string(),
        issuer: fc.constantFrom("AISSUER", "ACOJJN6WUP4ODD75XEBKKTCCUJJCY5ZKQ56XVKYK4BEJWGVAOOQHZMCW", ""),
        issuedAt: fc.string(),
        expiresAt: fc.option(fc.integer(), { nil: null }),
        expired: fc.boolean(),
      }),
      { nil: null },
    ),
    invocation: fc.option(fc.record({ interface: fc.string(), function: fc.string() }), { nil: null }),
    input: fc.oneof(fc.jsonValue(), fc.record({ request: fc.jsonValue() })),
    now: fc.date(),
    trust: fc.record({ verified: fc.boolean(), reasons: fc.array(fc.string(), { maxLength: 4 }) }),
  });
  const documentArb = fc.record({
    version: fc.constant(1 as const),
    default: fc.constantFrom("allow" as const, "deny" as const),
    rules: fc.array(
      fc.record({
        effect: fc.constantFrom("allow" as const, "deny" as const),
        mode: fc.constantFrom("enforce" as const, "dryrun" as const),
        when: fc.constantFrom(...expressions),
      }),
      { maxLength: 8 },
    ),
  });

  it("gives deep-equal results for the same facts, never throws, and combines consistently", () => {
    fc.assert(
      fc.property(documentArb, factsArb, (doc, facts) => {
        const compiled = compileRules({ ...doc, rules: doc.rules.map((r, i) => ({ ...r, id: `r${i}` })) });
        const first = evaluate(compiled, facts);
        expect(evaluate(compiled, facts)).toEqual(first);
        expect(evaluate(compiled, structuredClone(facts))).toEqual(first);

        const byId = new Map(compiled.document.rules.map((r) => [r.id, r]));
        const errored = new Set(first.errors.map((e) => e.ruleId));
        for (const id of first.matchedRules) expect(byId.get(id)?.mode).toBe("enforce");
        for (const id of first.dryRunRules) expect(byId.get(id)?.mode).toBe("dryrun");
        for (const id of [...first.matchedRules, ...first.dryRunRules]) expect(errored.has(id)).toBe(false);
        const enforcedDeny = first.matchedRules.some((id) => byId.get(id)?.effect === "deny");
        const enforcedAllow = first.matchedRules.some((id) => byId.get(id)?.effect === "allow");
        expect(first.permitted).toBe(
          enforcedDeny ? false : enforcedAllow ? true : compiled.default === "allow",
        );
        expect(first.decidingRule === null).toBe(first.matchedRules.length === 0);
      }),
      { numRuns: 300 },
    );
  });
});
