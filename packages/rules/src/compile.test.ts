import { describe, expect, it } from "vitest";
import { compileRules, isInvalidRulesError, type RulesIssue } from "./index.js";

function withWhen(...whens: string[]) {
  return {
    version: 1 as const,
    default: "deny" as const,
    rules: whens.map((when, i) => ({
      id: i === 0 ? "only-wasmcloud-signed" : `rule-${i}`,
      effect: "allow" as const,
      when,
    })),
  };
}

function compileError(...whens: string[]): { message: string; issues: readonly RulesIssue[] } {
  try {
    compileRules(withWhen(...whens));
  } catch (err) {
    if (isInvalidRulesError(err)) return { message: err.message, issues: err.issues };
    throw err;
  }
  throw new Error("expected an InvalidRulesError");
}

describe("compileRules", () => {
  it("compiles a condition once, whichever document and rule hold it", () => {
    const when = 'subject.imageRef.startsWith("ghcr.io/cache-test/") && subject.maxInstances > 2';
    const first = compileRules(withWhen(when)).rules[0]!;
    const again = compileRules(withWhen("true", when)).rules[1]!;
    expect(again.run).toBe(first.run);
    expect(again.rule.id).toBe("rule-1");
    expect(compileRules(withWhen(`${when} `)).rules[0]!.run).not.toBe(first.run);
    // A condition refused once is refused again, under the rule that holds it now.
    expect(compileError("true", "kind >").issues[0]).toMatchObject({ ruleId: "rule-1" });
    expect(compileError("kind >").issues[0]).toMatchObject({ ruleId: "only-wasmcloud-signed" });
  });

  it("compiles expressions using every variable, macros and built-in functions", () => {
    const compiled = compileRules(
      withWhen(
        'kind in ["startComponent", "startProvider"] && claims != null && claims.issuer.startsWith("A")',
        'host.labels.exists(k, k.startsWith("hostcore.")) && has(host.labels.kubernetes)',
        "subject != null && subject.maxInstances > 1 && size(subject.annotations) > 0",
        'invocation != null && invocation.function.matches("^handle$")',
        'input.request.claims.issuer == "x" && trust.verified && trust.reasons.all(r, r != "")',
        'now > timestamp("2024-01-01T00:00:00Z") - duration("24h") && type(now) == google.protobuf.Timestamp',
        "[1, 2].map(x, x * 2).filter(y, y > 2).size() == 1 && type(1) == int",
      ),
    );
    expect(compiled.ruleCount).toBe(7);
    expect(compiled.default).toBe("deny");
    expect(compiled.document.rules[0]?.id).toBe("only-wasmcloud-signed");
    expect(compiled.variables).toEqual([
      "kind",
      "host",
      "subject",
      "claims",
      "invocation",
      "input",
      "now",
      "trust",
    ]);
  });

  it("binds only the variables some rule uses", () => {
    expect(compileRules(withWhen('kind == "x"', "claims == null")).variables).toEqual(["kind", "claims"]);
  });

  it("names the rule and the column of a syntax error", () => {
    const { message, issues } = compileError('kind == "x" && claims.issuer = "A"');
    expect(issues).toEqual([
      {
        stage: "expression",
        ruleId: "only-wasmcloud-signed",
        path: "rules[0].when",
        line: 1,
        column: 30,
        message: expect.stringMatching(/^syntax error: /),
      },
    ]);
    expect(message).toMatch(
      /^invalid rules document: rule "only-wasmcloud-signed": when, column 30: syntax error: /,
    );
  });

  it("gives line and column inside a multi-line expression", () => {
    const { message, issues } = compileError('kind == "startComponent" &&\n  claimz.issuer == "x"');
    expect(issues[0]).toMatchObject({ line: 2, column: 3 });
    expect(message).toContain(
      'rule "only-wasmcloud-signed": when, line 2, column 3: unknown variable "claimz"',
    );
  });

  it("rejects unknown variables with their position", () => {
    const { issues } = compileError('kind == "x" && request.claims.issuer == "y"');
    expect(issues).toEqual([
      {
        stage: "expression",
        ruleId: "only-wasmcloud-signed",
        path: "rules[0].when",
        line: 1,
        column: 16,
        message: expect.stringContaining('unknown variable "request"'),
      },
    ]);
  });

  it("allows comprehension variables only inside their comprehension", () => {
    expect(() => compileRules(withWhen("host.labels.exists(k, k == 'x')"))).not.toThrow();
    const { issues } = compileError("host.labels.exists(k, k == 'x') && k == 'y'");
    expect(issues.map((i) => i.message)).toEqual([expect.stringContaining('unknown variable "k"')]);
  });

  it("rejects unknown functions and misused macros", () => {
    expect(compileError("kind.bogus()").issues[0]?.message).toBe('unknown function "bogus"');
    expect(compileError("has(kind)").issues[0]?.message).toBe('unknown function "has"');
    expect(compileError("Foo{a: 1} == kind").issues[0]?.message).toBe('unknown message type "Foo"');
  });

  it("rejects a condition whose type is not bool, with the rule and the position", () => {
    const cases: [string, string, number][] = [
      ["kind", "a string", 1],
      ['"x"', "a string", 1],
      ["1", "an int", 1],
      ["1.5", "a double", 1],
      ["null", "null", 1],
      ["[true]", "a list", 1],
      ['{"a": true}', "a map", 1],
      ["host.labels", "a map", 5],
      ["host", "a map", 1],
      ['host.labels["zone"]', "a string", 12],
      ["subject.maxInstances", "an int", 8],
      ["size(kind) + 1", "an int", 11],
      ['kind + "x"', "a string", 5],
      ["now", "a timestamp", 1],
      ["now - now", "a duration", 4],
      ['timestamp("2024-01-01T00:00:00Z")', "a timestamp", 1],
      ["trust.reasons", "a list", 6],
      ['claims == null ? "none" : claims.issuer', "a string", 1],
      ["host.labels.map(k, k)", "a list", 12],
      ["host.labels.filter(k, k == 'a')", "a list", 12],
      ["int", "a type", 1],
    ];
    for (const [when, type, column] of cases) {
      const { issues, message } = compileError(when);
      expect(issues, when).toEqual([
        {
          stage: "expression",
          ruleId: "only-wasmcloud-signed",
          path: "rules[0].when",
          line: 1,
          column,
          message: `the condition is ${type}, not a bool`,
        },
      ]);
      expect(message).toBe(
        `invalid rules document: rule "only-wasmcloud-signed": when, column ${column}: the condition is ${type}, not a bool`,
      );
    }
  });

  it("accepts conditions that are bool, or dyn and checked when they run", () => {
    const conditions = [
      "input.x",
      "input.request.maxInstances",
      "input.request.claims.issuer == 'A'",
      "claims != null && claims.expired",
      "claims.expiresAt",
      "dyn(kind)",
      "subject != null && subject.annotations['a'] == 'b'",
      "host.labels.all(k, host.labels[k] != '')",
      "host.labels.exists_one(k, k == 'zone')",
      "[1, 2].exists(x, x > 1)",
      "has(host.labels.zone)",
      "trust.verified",
      "kind.startsWith('start') || kind.matches('^perf')",
      "now > timestamp('2000-01-01T00:00:00Z') && now.getFullYear() > 2000",
      "subject.maxInstances > 1 ? true : false",
      "true ? input.a : false",
      "'a' in host.labels",
    ];
    for (const when of conditions) expect(() => compileRules(withWhen(when)), when).not.toThrow();
  });

  it("reports every broken rule at once", () => {
    const { message, issues } = compileError("kind ==", 'kind == "x"', "nope");
    expect(issues.map((i) => [i.ruleId, i.path])).toEqual([
      ["only-wasmcloud-signed", "rules[0].when"],
      ["rule-2", "rules[2].when"],
    ]);
    expect(message).toMatch(/2 problems/);
  });

  it("validates the document first", () => {
    expect(() =>
      compileRules({
        version: 1,
        default: "deny",
        rules: [
          { id: "a", effect: "allow", when: "true" },
          { id: "a", effect: "allow", when: "true" },
        ],
      }),
    ).toThrow(/duplicate id "a"/);
  });
});
