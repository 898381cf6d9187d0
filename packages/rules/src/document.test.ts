import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  InvalidRulesError,
  isInvalidRulesError,
  parseRulesDocument,
  type RulesDocumentInput,
  type RulesIssue,
  serializeRulesDocument,
  validateRulesDocument,
} from "./index.js";

function issuesOf(run: () => unknown): readonly RulesIssue[] {
  try {
    run();
  } catch (err) {
    if (isInvalidRulesError(err)) return err.issues;
    throw err;
  }
  throw new Error("expected an InvalidRulesError");
}

function messageOf(run: () => unknown): string {
  try {
    run();
  } catch (err) {
    if (err instanceof Error) return err.message;
  }
  throw new Error("expected an error");
}

const valid = `version: 1
default: deny
rules:
  - id: invocations-are-not-our-concern
    effect: allow
    when: kind == "performInvocation"
  - id: no-expired-claims
    effect: deny
    mode: dryrun
    when: claims != null && claims.expired
    message: component claims have expired
`;

describe("parseRulesDocument", () => {
  it("reads YAML and fills in the default mode", () => {
    const doc = parseRulesDocument(valid);
    expect(doc).toEqual({
      version: 1,
      default: "deny",
      rules: [
        {
          id: "invocations-are-not-our-concern",
          effect: "allow",
          mode: "enforce",
          when: 'kind == "performInvocation"',
        },
        {
          id: "no-expired-claims",
          effect: "deny",
          mode: "dryrun",
          when: "claims != null && claims.expired",
          message: "component claims have expired",
        },
      ],
    });
  });

  it("reads JSON with the same parser", () => {
    const json = JSON.stringify({
      version: 1,
      default: "allow",
      rules: [{ id: "a", effect: "deny", when: "true" }],
    });
    expect(parseRulesDocument(json, { format: "json" }).rules[0]?.mode).toBe("enforce");
    expect(parseRulesDocument(json).default).toBe("allow");
  });

  it("names the rule and the field of an unknown key, with its line and a suggestion", () => {
    const text = `version: 1
default: deny
rules:
  - id: first
    effect: allow
    when: "true"
  - id: only-wasmcloud-signed
    efect: allow
    when: "true"
`;
    const issues = issuesOf(() => parseRulesDocument(text));
    expect(issues).toContainEqual({
      stage: "schema",
      ruleId: "only-wasmcloud-signed",
      path: "rules[1].efect",
      line: 8,
      column: 5,
      message: 'unknown field "efect"; did you mean "effect"?',
    });
    expect(issues.some((i) => i.path === "rules[1].effect" && i.ruleId === "only-wasmcloud-signed")).toBe(
      true,
    );
    const message = messageOf(() => parseRulesDocument(text, { source: "rules.yaml" }));
    expect(message).toContain(
      'rules.yaml:8:5: rules[1] (id "only-wasmcloud-signed").efect: unknown field "efect"',
    );
  });

  it("lists at most 20 problems in its message, however many a file that is no rules document has, and keeps them all", () => {
    const text = Array.from({ length: 200 }, (_, i) => `key${i}: ${i}`).join("\n");
    let caught: unknown;
    try {
      parseRulesDocument(text, { source: "not-rules.yaml" });
    } catch (err) {
      caught = err;
    }
    expect(isInvalidRulesError(caught)).toBe(true);
    const err = caught as InvalidRulesError;
    expect(err.issues.length).toBeGreaterThan(200);
    const listed = err.message.split("\n").filter((line) => line.startsWith("  - "));
    expect(listed).toHaveLength(20);
    expect(err.message).toMatch(new RegExp(`^invalid rules document \\(${err.issues.length} problems\\):`));
    expect(err.message).toMatch(
      new RegExp(`… and ${err.issues.length - 20} more \\(every one is in the error's issues\\)$`),
    );
  });

  it("names the rule of a bad effect and points at the value", () => {
    const text = `version: 1
default: deny
rules:
  - id: only-wasmcloud-signed
    effect: permit
    when: "true"
`;
    const [issue, ...rest] = issuesOf(() => parseRulesDocument(text));
    expect(rest).toEqual([]);
    expect(issue).toMatchObject({
      stage: "schema",
      ruleId: "only-wasmcloud-signed",
      path: "rules[0].effect",
      line: 5,
      column: 13,
    });
    expect(issue?.message).toMatch(/allow.*deny/);
  });

  it("rejects duplicate ids, naming both rules", () => {
    const text = `version: 1
default: deny
rules:
  - id: same
    effect: allow
    when: "true"
  - id: same
    effect: deny
    when: "false"
`;
    expect(issuesOf(() => parseRulesDocument(text))).toEqual([
      {
        stage: "schema",
        ruleId: "same",
        path: "rules[1].id",
        line: 7,
        column: 9,
        message: 'duplicate id "same" (also used by rules[0])',
      },
    ]);
  });

  it("reports duplicate ids together with other problems", () => {
    const issues = issuesOf(() =>
      validateRulesDocument({
        version: 1,
        default: "deny",
        rules: [
          { id: "same", effect: "allow", when: "true" },
          { id: "same", effect: "maybe", when: "true" },
        ],
      }),
    );
    expect(issues.map((i) => i.path).sort()).toEqual(["rules[1].effect", "rules[1].id"]);
  });

  it("gives the line and column of a YAML syntax error", () => {
    const text = "version: 1\ndefault: deny\nrules:\n  - id: a\n   effect: allow\n";
    const [issue] = issuesOf(() => parseRulesDocument(text));
    expect(issue).toMatchObject({ stage: "syntax", path: "", line: 5 });
    expect(messageOf(() => parseRulesDocument(text, { source: "x.yaml" }))).toMatch(
      /^invalid rules document: x\.yaml:5:\d+: /,
    );
  });

  it("rejects duplicate keys, several documents and alias bombs as syntax errors", () => {
    expect(issuesOf(() => parseRulesDocument("version: 1\nversion: 1\n"))[0]?.stage).toBe("syntax");
    expect(issuesOf(() => parseRulesDocument("version: 1\n---\nversion: 1\n"))[0]?.stage).toBe("syntax");
    // "Billion laughs": each level refers ten times to the one before.
    const letters = "abcdefghij";
    const bomb = ["a: &a [x, x, x, x, x, x, x, x, x, x]"];
    for (let i = 1; i < letters.length; i++) {
      const [prev, cur] = [letters[i - 1], letters[i]];
      bomb.push(`${cur}: &${cur} [${Array.from({ length: 10 }, () => `*${prev}`).join(", ")}]`);
    }
    expect(issuesOf(() => parseRulesDocument(bomb.join("\n")))[0]?.stage).toBe("syntax");
  });

  it("calls a required field that is left out missing, not invalid", () => {
    const issues = issuesOf(() => parseRulesDocument("version: 1\nrules:\n  - id: x\n    when: 'true'\n"));
    expect(issues.map((i) => [i.path, i.message])).toEqual([
      ["default", 'missing: expected one of "allow"|"deny"'],
      ["rules[0].effect", 'missing: expected one of "allow"|"deny"'],
    ]);
    const wrong = issuesOf(() => parseRulesDocument("version: 1\ndefault: alow\nrules: []\n"));
    expect(wrong[0]?.message).not.toMatch(/missing/);
  });

  it("checks every field of a rule", () => {
    const issues = issuesOf(() =>
      validateRulesDocument({
        version: 2,
        default: "maybe",
        rules: [{ id: "-starts-with-dash", effect: "allow", when: "", mode: "shadow", message: "" }],
      }),
    );
    expect(issues.map((i) => i.path).sort()).toEqual([
      "default",
      "rules[0].id",
      "rules[0].message",
      "rules[0].mode",
      "rules[0].when",
      "version",
    ]);
    expect(issues.find((i) => i.path === "rules[0].when")?.ruleId).toBe("-starts-with-dash");
  });

  it("throws an InvalidRulesError with code INVALID_RULES", () => {
    try {
      validateRulesDocument(null);
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(InvalidRulesError);
      expect(err).toMatchObject({ name: "InvalidRulesError", code: "INVALID_RULES" });
    }
  });
});

describe("serializeRulesDocument", () => {
  const ruleArb = fc.record(
    {
      id: fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9._-]{0,20}$/),
      effect: fc.constantFrom("allow" as const, "deny" as const),
      when: fc.string({ minLength: 1 }),
      message: fc.string({ minLength: 1 }),
      mode: fc.constantFrom("enforce" as const, "dryrun" as const),
      description: fc.string(),
    },
    { requiredKeys: ["id", "effect", "when"] },
  );
  const docArb = fc.record({
    version: fc.constant(1 as const),
    default: fc.constantFrom("allow" as const, "deny" as const),
    rules: fc.uniqueArray(ruleArb, { selector: (r) => r.id, maxLength: 6 }),
  });

  it("writes YAML and JSON that read back to an equal document", () => {
    fc.assert(
      fc.property(
        docArb,
        fc.constantFrom("yaml" as const, "json" as const),
        (input: RulesDocumentInput, format) => {
          const doc = validateRulesDocument(input);
          expect(parseRulesDocument(serializeRulesDocument(doc, format), { format })).toEqual(doc);
        },
      ),
    );
  });

  it("leaves out the default mode", () => {
    const text = serializeRulesDocument({
      version: 1,
      default: "deny",
      rules: [{ id: "a", effect: "allow", when: "true" }],
    });
    expect(text).not.toContain("mode");
    expect(parseRulesDocument(text).rules[0]?.mode).toBe("enforce");
  });
});
