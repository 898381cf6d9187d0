import { RuleErrorV1 } from "@arbiter/protocol";
import { type CelError, type CelInput, type CelResult, celError, celType, isCelError } from "@bufbuild/cel";
import { z } from "zod";
import { toCelTimestamp, toCelValue } from "./cel-values.js";
import type { CelBindings, CompiledRule, CompiledRules } from "./compile.js";
import type { Rule } from "./document.js";
import { claimsAt, type EvaluationFacts, type VariableName } from "./facts.js";
import { UNDECIDED } from "./fast-path.js";

/**
 * The outcome of evaluating the rules against one request. `matchedRules` are the enforced rules
 * that matched and `dryRunRules` the dry-run rules that matched, both in document order; `errors`
 * are the rules whose expression failed or did not give a bool (they count as not matching).
 */
export const Evaluation = z.object({
  permitted: z.boolean(),
  message: z.string(),
  /** The rule that decided, or null when the document default applied. */
  decidingRule: z.string().nullable(),
  matchedRules: z.array(z.string()),
  dryRunRules: z.array(z.string()),
  errors: z.array(RuleErrorV1),
});
export type Evaluation = z.infer<typeof Evaluation>;

/**
 * Evaluates every rule against `facts` and combines them: a matching enforced `deny` wins, else a
 * matching enforced `allow` permits, else the document default applies; dry-run rules are reported
 * but never change the outcome. Pure and deterministic (the clock is `facts.now`), and never throws:
 * an expression that fails at run time is recorded in `errors` and counts as not matching. The
 * rules see `claims.expired` as {@link claimsAt} `facts.now` makes it.
 */
export function evaluate(rules: CompiledRules, given: EvaluationFacts): Evaluation {
  const claims = claimsAt(given.claims, given.now);
  const facts = claims === given.claims ? given : { ...given, claims };
  // Bound only when some rule needs @bufbuild/cel for these facts.
  let bindings: CelBindings | undefined;
  const matchedRules: string[] = [];
  const dryRunRules: string[] = [];
  const errors: RuleErrorV1[] = [];
  let firstDeny: Rule | undefined;
  let firstAllow: Rule | undefined;
  for (const compiled of rules.rules) {
    const { rule } = compiled;
    let outcome: boolean | string | typeof UNDECIDED =
      compiled.fast === null ? UNDECIDED : compiled.fast(facts);
    if (outcome === UNDECIDED) {
      bindings ??= bind(rules.variables, facts);
      outcome = runRule(compiled, bindings);
    }
    if (typeof outcome === "string") {
      errors.push({ ruleId: rule.id, message: clipErrorMessage(outcome) });
      continue;
    }
    if (!outcome) continue;
    switch (rule.mode) {
      case "dryrun":
        dryRunRules.push(rule.id);
        continue;
      case "enforce":
        matchedRules.push(rule.id);
        break;
    }
    switch (rule.effect) {
      case "deny":
        firstDeny ??= rule;
        break;
      case "allow":
        firstAllow ??= rule;
        break;
    }
  }
  const deciding = firstDeny ?? firstAllow;
  if (deciding === undefined) {
    return {
      permitted: rules.default === "allow",
      message: `no rule matched; default is ${rules.default}`,
      decidingRule: null,
      matchedRules,
      dryRunRules,
      errors,
    };
  }
  const permitted = deciding.effect === "allow";
  return {
    permitted,
    message: deciding.message ?? `${permitted ? "allowed" : "denied"} by rule "${deciding.id}"`,
    decidingRule: deciding.id,
    matchedRules,
    dryRunRules,
    errors,
  };
}

/** Longest rule error message recorded; longer ones keep their start and give their length. */
const MAX_RULE_ERROR_CHARS = 512;

/**
 * A rule error message as recorded: CEL quotes the value it failed on (`field not found: <key>`,
 * whatever the host sent as that key), and each failing rule's message is written into the
 * decision and every re-evaluation of it, so a host's 240 KB component id times a few such rules
 * made records no message could hold (the re-evaluation's chunk failed at every delivery).
 */
function clipErrorMessage(message: string): string {
  if (message.length <= MAX_RULE_ERROR_CHARS) return message;
  let end = MAX_RULE_ERROR_CHARS - 64;
  const code = message.charCodeAt(end - 1);
  if (code >= 0xd800 && code <= 0xdbff) end--;
  return `${message.slice(0, end)}…(${message.length} characters)`;
}

// Whether the rule matched, or why it could not be decided.
function runRule(compiled: CompiledRule, bindings: CelBindings): boolean | string {
  let result: CelResult;
  try {
    result = compiled.run(bindings);
  } catch (err) {
    // plan() catches what the evaluator throws; this is only a second line of defence.
    result = celError(err);
  }
  if (isCelError(result)) {
    const position = compiled.positionOf(result.exprId);
    const at = position === undefined ? "" : `${formatPosition(position)}: `;
    return `${at}${result.message}`;
  }
  if (typeof result === "boolean") return result;
  return `when evaluated to ${describeType(result)}, not a bool`;
}

function formatPosition({ line, column }: { line: number; column: number }): string {
  return line === 1 ? `column ${column}` : `line ${line}, column ${column}`;
}

function describeType(value: Exclude<CelResult, CelError>): string {
  try {
    return `a value of type ${celType(value).name}`;
  } catch {
    return "a value of unknown type";
  }
}

function bind(variables: readonly VariableName[], facts: EvaluationFacts): CelBindings {
  const bindings: CelBindings = {};
  for (const name of variables) {
    try {
      bindings[name] = bindOne(name, facts);
    } catch (err) {
      // E.g. a cyclic `input`; only the rules that use this variable fail.
      bindings[name] = celError(
        `cannot bind variable ${name}: ${err instanceof Error ? err.message : String(err)}`,
      );
    }
  }
  return bindings;
}

function bindOne(name: VariableName, facts: EvaluationFacts): CelInput | CelError {
  switch (name) {
    case "now":
      return facts.now instanceof Date ? toCelTimestamp(facts.now) : celError("now is not a Date");
    case "kind":
    case "host":
    case "subject":
    case "claims":
    case "invocation":
    case "input":
    case "trust":
      return toCelValue(facts[name]);
  }
}
