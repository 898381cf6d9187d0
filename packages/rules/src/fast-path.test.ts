import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { toCelTimestamp, toCelValue } from "./cel-values.js";
import { type CelBindings, type CompiledRule, compileRules } from "./compile.js";
import { type EvaluationFacts, VARIABLE_NAMES } from "./facts.js";
import { UNDECIDED } from "./fast-path.js";

const compileOne = (when: string): CompiledRule =>
  compileRules({ version: 1, default: "deny", rules: [{ id: "r", effect: "allow", when }] }).rules[0]!;

function bindAll(facts: EvaluationFacts): CelBindings {
  const bindings: CelBindings = {};
  for (const name of VARIABLE_NAMES) {
    bindings[name] = name === "now" ? toCelTimestamp(facts.now) : toCelValue(facts[name]);
  }
  return bindings;
}

/** Expressions a fast condition takes: constants, selections, ==, !=, in, &&, ||, ! and string tests. */
const SIMPLE = [
  'kind == "performInvocation"',
  'kind in ["startComponent", "startProvider"]',
  'kind in ["startComponent", true, null]',
  'kind in ["startComponent", "startProvider"] && claims != null && claims.issuer == "AISSUER"',
  "claims != null && claims.expired",
  "claims == null || !claims.expired",
  "claims.expired",
  "!(claims.issuer == 'AISSUER')",
  "claims.issuer != null",
  "claims == host",
  "claims.issuer == claims.publicKey",
  'host.labels.zone == "eu-1" || host.labels.zone == "eu-2"',
  "input.request.claims.issuer == 'AISSUER'",
  'input.kind == kind && input.host.lattice != ""',
  "trust.verified || claims.expired",
  "invocation != null && invocation.function == 'handle'",
  "subject.annotations.tier == 'gold' && !trust.verified",
  "true",
  "input.kind == true",
  "null == claims",
  "input.request.claims.issuer || claims.expired",
  "!input.kind",
  "kind.startsWith('start')",
  'claims.issuer.endsWith("ISSUER") && kind.contains("Comp")',
  "host.labels.zone.startsWith(claims.issuer)",
  "input.kind.contains(kind) || !claims.issuer.startsWith('\ud800')",
  "input.startsWith('A')",
  "kind.startsWith(input.kind)",
];

/** Expressions left to @bufbuild/cel alone. */
const NOT_SIMPLE = [
  "has(claims.issuer)",
  "subject.maxInstances > 1",
  "claims.expiresAt == 5",
  "kind.matches('^start')",
  "kind.startsWith('a', 'b')",
  "startsWith(kind, 'a')",
  "kind.size() == 5",
  'now > timestamp("2024-01-01T00:00:00Z")',
  "size(trust.reasons) == 0",
  "kind in host.labels",
  "claims.issuer == 'A' ? true : false",
  "[kind] == ['x']",
];

const ISSUERS = ["AISSUER", "ACOJJN6WUP4ODD75XEBKKTCCUJJCY5ZKQ56XVKYK4BEJWGVAOOQHZMCW", "", "\ud800"];
const anyValue = fc.oneof(
  fc.constantFrom(...ISSUERS, "performInvocation", "startComponent", "eu-1", "gold", "handle"),
  fc.boolean(),
  fc.constant(null),
  fc.jsonValue({ maxDepth: 2 }),
);
const mapOf = (keys: readonly string[]) =>
  fc.dictionary(fc.constantFrom(...keys), anyValue, { maxKeys: keys.length });
const KEYS = [
  "publicKey",
  "issuer",
  "issuedAt",
  "expiresAt",
  "expired",
  "zone",
  "tier",
  "function",
  "lattice",
];
const factsArb = fc.record({
  kind: anyValue,
  host: fc.oneof(mapOf(KEYS), fc.record({ lattice: anyValue, labels: mapOf(["zone"]) })),
  subject: fc.option(fc.record({ annotations: mapOf(["tier"]) }), { nil: null }),
  claims: fc.oneof(fc.constant(null), mapOf(KEYS), anyValue),
  invocation: fc.option(mapOf(["function", "interface"]), { nil: null }),
  input: fc.oneof(
    anyValue,
    fc.record({ kind: anyValue, host: mapOf(KEYS), request: fc.record({ claims: mapOf(KEYS) }) }),
  ),
  now: fc.date({ noInvalidDate: true }),
  trust: fc.oneof(fc.record({ verified: anyValue, reasons: fc.array(fc.string()) }), anyValue),
}) as fc.Arbitrary<unknown> as fc.Arbitrary<EvaluationFacts>;

describe("fast conditions", () => {
  it("are built for simple expressions and only for them", () => {
    for (const when of SIMPLE) expect(compileOne(when).fast, when).not.toBeNull();
    for (const when of NOT_SIMPLE) expect(compileOne(when).fast, when).toBeNull();
  });

  it("answer exactly as @bufbuild/cel does whenever they decide, on any facts", () => {
    const rules = SIMPLE.map((when) => ({ when, rule: compileOne(when) }));
    let decided = 0;
    let undecided = 0;
    fc.assert(
      fc.property(factsArb, (facts) => {
        const bindings = bindAll(facts);
        for (const { when, rule } of rules) {
          const fast = rule.fast!(facts);
          if (fast === UNDECIDED) {
            undecided++;
            continue;
          }
          decided++;
          expect(rule.run(bindings), `${when} on ${JSON.stringify(facts)}`).toBe(fast);
        }
      }),
      { numRuns: 2000 },
    );
    // Both ways are taken, so the comparison above is not vacuous.
    expect(decided).toBeGreaterThan(1000);
    expect(undecided).toBeGreaterThan(1000);
  });

  it("decide the example rules on real requests' facts", () => {
    const facts = {
      kind: "startComponent",
      host: { publicKey: "N", lattice: "default", labels: {} },
      subject: { id: "c", imageRef: "r", annotations: {}, maxInstances: 1 },
      claims: { publicKey: "M", issuer: "AISSUER", issuedAt: "1", expiresAt: null, expired: false },
      invocation: null,
      input: {},
      now: new Date(),
      trust: { verified: false, reasons: [] },
    } satisfies EvaluationFacts;
    expect(compileOne('kind == "performInvocation"').fast!(facts)).toBe(false);
    expect(compileOne(SIMPLE[3]!).fast!(facts)).toBe(true);
    expect(compileOne("claims != null && claims.expired").fast!(facts)).toBe(false);
    expect(compileOne("claims.missing == 'x'").fast!(facts)).toBe(UNDECIDED);
  });
});
