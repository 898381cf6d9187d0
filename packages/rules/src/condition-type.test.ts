import { celEnv, isCelError, parse, plan } from "@bufbuild/cel";
import { describe, expect, it } from "vitest";
import { toCelTimestamp, toCelValue } from "./cel-values.js";
import { type CelBindings, compileRules } from "./compile.js";
import { typeProblems } from "./condition-type.js";
import { type EvaluationFacts, VARIABLE_NAMES } from "./facts.js";
import { isInvalidRulesError, type RulesIssue } from "./index.js";

const FACTS: EvaluationFacts = {
  kind: "startComponent",
  host: { publicKey: "N", lattice: "default", labels: { zone: "eu" } },
  subject: { id: "c", imageRef: "r", annotations: { tier: "gold" }, maxInstances: 3 },
  claims: {
    publicKey: "M",
    issuer: "A",
    issuedAt: "2024-01-01T00:00:00Z",
    expiresAt: null,
    expired: false,
  },
  invocation: { interface: "wasi:http/incoming-handler", function: "handle" },
  input: { x: 1 },
  now: new Date("2026-01-01T00:00:00Z"),
  trust: { verified: true, reasons: ["r"] },
};

function bindings(): CelBindings {
  const out: CelBindings = {};
  for (const name of VARIABLE_NAMES) {
    out[name] = name === "now" ? toCelTimestamp(FACTS.now) : toCelValue(FACTS[name]);
  }
  return out;
}

const env = celEnv();
/** What @bufbuild/cel answers for `when` on {@link FACTS}: a value, or the error's message. */
function run(when: string): { value: unknown } | { error: string } {
  const result = plan(env, parse(when))(bindings() as Parameters<ReturnType<typeof plan>>[0]);
  if (isCelError(result)) return { error: result.message };
  return { value: typeof result === "object" && result !== null ? "(a value)" : result };
}
const NO_OVERLOAD = /no matching overload|type mismatch/;

function issuesOf(when: string): readonly RulesIssue[] {
  try {
    compileRules({ version: 1, default: "deny", rules: [{ id: "r", effect: "allow", when }] });
  } catch (err) {
    if (isInvalidRulesError(err)) return err.issues;
    throw err;
  }
  return [];
}

describe("operand types known before a condition runs", () => {
  it("refuse operators CEL has no overload for, with the rule and the operator's position", () => {
    const cases: [string, number, string][] = [
      ['subject.maxInstances > "3"', 22, 'no ">" between an int and a string'],
      ["kind < 1", 5, 'no "<" between a string and an int'],
      ["now >= 5", 4, 'no ">=" between a timestamp and an int'],
      ['duration("1s") < 1', 15, 'no "<" between a duration and an int'],
      ["trust.reasons < trust.reasons", 15, 'no "<" between a list and a list'],
      ["subject.maxInstances + 1.5 > 1.0", 22, 'no "+" between an int and a double'],
      ["size(kind + 1) > 0", 10, 'no "+" between a string and an int'],
      ["subject.maxInstances - 1u == 0u", 22, 'no "-" between an int and an uint'],
      ['duration("1s") - now > now', 15, 'no "-" between a duration and a timestamp'],
      ["1.5 % 2.0 == 0.5", 4, 'no "%" between a double and a double'],
      ['kind * 2 == ""', 5, 'no "*" between a string and an int'],
      ["-kind == kind", 1, 'no "-" for a string'],
      ["!kind", 1, 'no "!" for a string, only for a bool'],
      ["kind && trust.verified", 1, '"&&" takes bools, not a string'],
      ["trust.verified || subject.maxInstances", 1, '"||" takes bools, not an int'],
      ["kind ? true : false", 1, 'the test of "?:" is a string, not a bool'],
      ['"a" in kind', 4, 'no "in" on a string, only on a list or a map'],
      ["size(subject.maxInstances) > 0", 1, "no size() of an int"],
      ["kind.startsWith(1)", 5, "startsWith() takes a string, not an int"],
      ['subject.maxInstances.contains("1")', 21, "no contains() on an int, only on a string"],
      ['kind[0] == "s"', 5, "a string cannot be indexed"],
      ["[1, 2].all(x, x)", 7, '"&&" takes bools, not an int'],
      ['subject.maxInstances == "3"', 22, '"==" between an int and a string is always false'],
      ["kind != 1", 5, '"!=" between a string and an int is always true'],
      ["trust.verified == 1", 16, '"==" between a bool and an int is always false'],
      [
        "subject.maxInstances in trust.reasons",
        22,
        '"in" looks for an int among elements that are a string: always false',
      ],
      ["input.x in kind", 9, 'no "in" on a string, only on a list or a map'],
      ["now in host.labels", 4, 'no "in" of a timestamp in a map: its keys are strings, numbers or bools'],
      ["1 in host.labels", 2, '"in" looks for an int among keys that are a string: always false'],
    ];
    for (const [when, column, message] of cases) {
      expect(issuesOf(when), when).toEqual([
        { stage: "expression", ruleId: "r", path: "rules[0].when", line: 1, column, message },
      ]);
    }
  });

  it("accept what CEL has overloads for, and anything on a dyn operand", () => {
    const accepted = [
      "subject.maxInstances > 3",
      "subject.maxInstances > 2.5 && subject.maxInstances < 10u",
      "subject.maxInstances == 3.0 || subject.maxInstances != 3u",
      "1u + 2u > 2u && 7 % 2 == 1 && 7u % 2u == 1u && 1.5 * 2.0 / 1.0 - 1.0 > 0.0",
      'kind + "x" != "" && b"a" + b"b" != b"" && kind < "z" && b"a" < b"b"',
      "trust.reasons + ['x'] != [] && size(trust.reasons) > 0 && size(host.labels) >= 0",
      'now + duration("1s") > now && duration("1s") + now > now && now - now == duration("0s")',
      'now - duration("1s") < now && duration("2s") - duration("1s") > duration("0s")',
      "-subject.maxInstances < 0 && -1.5 < 0.0",
      "true < false || !trust.verified",
      "kind in ['a', 'b'] || kind in host.labels || 'zone' in host || null in trust.reasons",
      "kind in [1, 'startComponent']",
      "claims == null || subject == null || invocation != null || null == host",
      "claims.expiresAt == null && claims.expiresAt != 5",
      "type(subject.maxInstances) == int && type(kind) != string",
      "input.x > 'a'",
      "input.x + 1 > 2 && kind + input.y == 'z'",
      "!input.flag && input.a || input.b",
      "input.x ? true : false",
      "dyn(kind) == 1 && dyn(subject.maxInstances) > '3'",
      "host.labels.exists(k, k.startsWith('z')) && trust.reasons.all(r, r != '')",
      "trust.reasons.exists_one(r, r == 'x') || host.labels.map(k, k + '!').size() > 0",
      "host.labels.filter(k, host.labels[k] == 'eu').size() == 1",
      "kind.contains('Comp') && kind.endsWith('t') && kind.matches('^s')",
      "host == host.labels || trust.reasons == host.labels",
      'kind == "startComponent" ? subject.maxInstances > 1 : trust.verified',
    ];
    for (const when of accepted) expect(issuesOf(when), when).toEqual([]);
  });

  it("CEL answers == between different types false and != true, whatever the values", () => {
    expect(run('subject.maxInstances == "3"')).toEqual({ value: false });
    expect(run("kind == 1")).toEqual({ value: false });
    expect(run("kind != 1")).toEqual({ value: true });
    expect(run("trust.verified == 1")).toEqual({ value: false });
    expect(run("subject.maxInstances in trust.reasons")).toEqual({ value: false });
    // Numbers are equal across int, uint and double, and ordered across them.
    expect(run("subject.maxInstances == 3.0 && subject.maxInstances == 3u")).toEqual({ value: true });
    expect(run("subject.maxInstances > 2.5 && subject.maxInstances < 4u")).toEqual({ value: true });
  });

  it("refuse only what fails on every request, and never what runs", () => {
    // Each operand sample: an expression of a known type (or dyn) with its value in FACTS.
    const samples = [
      "subject.maxInstances",
      "2u",
      "1.5",
      "kind",
      'b"a"',
      "trust.verified",
      "claims.expired",
      "null",
      "now",
      'duration("1s")',
      "trust.reasons",
      "host.labels",
      "host",
      "type(1)",
      "input.x",
    ];
    const binary = ["<", "<=", ">", ">=", "+", "-", "*", "/", "%", "==", "!=", "in", "&&", "||"];
    const unary = ["!(#)", "-(#)", "(#) ? 1 : 2", "size(#)", "(#)[0]"];
    const conditions: string[] = [];
    for (const a of samples) {
      for (const form of unary) conditions.push(form.replace("#", a));
      for (const b of samples) for (const op of binary) conditions.push(`(${a}) ${op} (${b})`);
    }
    let refused = 0;
    let ran = 0;
    for (const when of conditions) {
      const problems = typeProblems(parse(when).expr);
      const outcome = run(when);
      const label = `${when}: ${JSON.stringify(outcome, (_, v) => (typeof v === "bigint" ? `${v}n` : v))}`;
      if (problems.length === 0) {
        // Accepted: a missing overload can show only on a dyn operand.
        if (!("error" in outcome)) ran++;
        else if (NO_OVERLOAD.test(outcome.error)) expect(when.includes("input."), label).toBe(true);
        continue;
      }
      refused++;
      const message = problems[0]!.message;
      if (/always false$/.test(message)) expect(outcome, label).toEqual({ value: false });
      else if (/always true$/.test(message)) expect(outcome, label).toEqual({ value: true });
      else if ("error" in outcome)
        expect(outcome.error, label).toMatch(/no matching overload|type mismatch|out of bounds/);
      else {
        // `false && 1`, `true || 1`: CEL decides on the bool side before it looks at the other;
        // with the other bool sample the same condition fails.
        const flipped = when.includes("trust.verified")
          ? when.replaceAll("trust.verified", "claims.expired")
          : when.replaceAll("claims.expired", "trust.verified");
        expect(/&&|\|\|/.test(when) && "error" in run(flipped), label).toBe(true);
      }
    }
    // Both ways are taken, so neither half of the check is vacuous.
    expect(ran).toBeGreaterThan(300);
    expect(refused).toBeGreaterThan(500);
  });
});
