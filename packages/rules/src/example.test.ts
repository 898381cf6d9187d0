import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { compileRules, type EvaluationFacts, evaluate, parseRulesDocument } from "./index.js";

// The example rules ported from the OPA policy of the wasmCloud blog (seed 001), checked against
// real 1.x requests (test/data/wasmcloud-v1, copied from wasmCloud's Go policy-server tests).

const exampleUrl = new URL("../../../deploy/rules/example.yaml", import.meta.url);
const fixtureUrl = (name: string) => new URL(`../../../test/data/wasmcloud-v1/${name}.json`, import.meta.url);
const NOW = new Date("2025-01-01T00:00:00Z");

interface FixtureClaims {
  publicKey: string;
  issuer: string;
  issuedAt: string;
  expiresAt: number | null;
  expired: boolean;
}
interface FixtureSubject {
  componentId?: string;
  providerId?: string;
  imageRef: string;
  annotations: Record<string, string>;
  maxInstances?: number;
  claims: FixtureClaims | null;
}
interface FixtureRequest {
  kind: string;
  host: EvaluationFacts["host"];
  request: FixtureSubject & { interface?: string; function?: string; target?: FixtureSubject };
}

function readFixture(name: string): FixtureRequest {
  return JSON.parse(readFileSync(fixtureUrl(name), "utf8")) as FixtureRequest;
}

// The mapping the worker does from a validated request: for an invocation the subject (and its
// claims) is `request.target`.
function factsOf(request: FixtureRequest): EvaluationFacts {
  const body = request.request;
  const invocation = request.kind === "performInvocation";
  const subject = invocation && body.target !== undefined ? body.target : body;
  return {
    kind: request.kind,
    host: request.host,
    subject: {
      id: subject.componentId ?? subject.providerId ?? "",
      imageRef: subject.imageRef,
      annotations: subject.annotations,
      maxInstances: subject.maxInstances ?? 0,
    },
    claims: subject.claims,
    invocation: invocation ? { interface: body.interface ?? "", function: body.function ?? "" } : null,
    input: request,
    now: NOW,
    trust: { verified: false, reasons: [] },
  };
}

describe("deploy/rules/example.yaml", () => {
  const compiled = compileRules(
    parseRulesDocument(readFileSync(exampleUrl, "utf8"), { source: "example.yaml" }),
  );

  it("has the three rules of the ported policy, default deny", () => {
    expect(compiled.default).toBe("deny");
    expect(compiled.document.rules.map((r) => [r.id, r.effect, r.mode])).toEqual([
      ["invocations-are-not-our-concern", "allow", "enforce"],
      ["only-wasmcloud-signed", "allow", "enforce"],
      ["no-expired-claims", "deny", "dryrun"],
    ]);
  });

  it("denies start-component.json (issuer ADVIWF…, not wasmCloud)", () => {
    expect(evaluate(compiled, factsOf(readFixture("start-component")))).toEqual({
      permitted: false,
      message: "no rule matched; default is deny",
      decidingRule: null,
      matchedRules: [],
      dryRunRules: [],
      errors: [],
    });
  });

  it("permits start-provider.json, signed by wasmCloud", () => {
    expect(evaluate(compiled, factsOf(readFixture("start-provider")))).toEqual({
      permitted: true,
      message: "signed by wasmCloud",
      decidingRule: "only-wasmcloud-signed",
      matchedRules: ["only-wasmcloud-signed"],
      dryRunRules: [],
      errors: [],
    });
  });

  it("permits perform-invocation.json", () => {
    expect(evaluate(compiled, factsOf(readFixture("perform-invocation")))).toMatchObject({
      permitted: true,
      decidingRule: "invocations-are-not-our-concern",
      errors: [],
    });
  });

  it("reports expired claims through the dry-run rule without denying", () => {
    const facts = factsOf(readFixture("start-provider"));
    const result = evaluate(compiled, { ...facts, claims: { ...facts.claims!, expired: true } });
    expect(result).toMatchObject({ permitted: true, decidingRule: "only-wasmcloud-signed" });
    expect(result.dryRunRules).toEqual(["no-expired-claims"]);
  });

  it("agrees with the Rego form reading `input`", () => {
    const rego = compileRules({
      version: 1,
      default: "deny",
      rules: [
        { id: "invocations", effect: "allow", when: 'input.kind == "performInvocation"' },
        {
          id: "signed",
          effect: "allow",
          when: 'input.kind in ["startComponent", "startProvider"] && input.request.claims != null && input.request.claims.issuer == "ACOJJN6WUP4ODD75XEBKKTCCUJJCY5ZKQ56XVKYK4BEJWGVAOOQHZMCW"',
        },
      ],
    });
    for (const name of ["start-component", "start-provider", "perform-invocation"]) {
      const facts = factsOf(readFixture(name));
      expect(evaluate(rego, facts).permitted).toBe(evaluate(compiled, facts).permitted);
    }
  });
});
