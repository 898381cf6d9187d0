import {
  type CelEnv,
  type CelError,
  type CelInput,
  type CelResult,
  celEnv,
  parse,
  plan,
} from "@bufbuild/cel";
import { describeStaticType, TYPE_NAMES, typeOf, typeProblems } from "./condition-type.js";
import {
  type Rule,
  type RuleEffectV1,
  type RulesDocument,
  type RulesDocumentInput,
  validateRulesDocument,
} from "./document.js";
import { InvalidRulesError, type RulesIssue } from "./errors.js";
import { VARIABLE_NAMES, type VariableName } from "./facts.js";
import { type FastCondition, fastCondition } from "./fast-path.js";

/** Values bound to the CEL variables for one evaluation (a CelError fails only the rules using it). */
export type CelBindings = Partial<Record<VariableName, CelInput | CelError>>;

/** A rule with its `when` parsed, checked and planned once, ready to run many times. */
export interface CompiledRule {
  readonly rule: Rule;
  /** Index of the rule in the document. */
  readonly index: number;
  /** Runs the planned expression; returns a CelError rather than throwing. */
  readonly run: (bindings: CelBindings) => CelResult;
  /**
   * Evaluates the plain cases of a simple expression on the facts directly, as `run` would
   * answer them; null when the expression is not that simple (see fast-path.ts).
   */
  readonly fast: FastCondition | null;
  /** 1-based line and column in `rule.when` of the sub-expression with CEL id `exprId`. */
  readonly positionOf: (exprId: bigint | undefined) => { line: number; column: number } | undefined;
}

/**
 * A rules document compiled for evaluation: every `when` parsed and planned once per revision, so
 * evaluating never parses again. Build it with {@link compileRules}.
 */
export interface CompiledRules {
  /** The validated document it was compiled from. */
  readonly document: RulesDocument;
  /** What applies when no enforced rule matches. */
  readonly default: RuleEffectV1;
  /** Number of rules in the document (enforced and dry-run). */
  readonly ruleCount: number;
  /** The compiled rules, in document order. */
  readonly rules: readonly CompiledRule[];
  /** The variables some rule refers to; only these are converted and bound when evaluating. */
  readonly variables: readonly VariableName[];
}

/**
 * Validates `doc` and compiles every rule's `when` with @bufbuild/cel. Throws
 * {@link InvalidRulesError} listing every rule whose expression does not parse, refers to a
 * variable other than the documented ones or to a function CEL does not have, applies an operator
 * to operands of known types it has no overload for (`subject.maxInstances > "3"`), or has a type
 * other than bool (`when: kind`), with the rule id and the line and column inside the expression.
 */
export function compileRules(doc: RulesDocumentInput): CompiledRules {
  const document = validateRulesDocument(doc);
  const issues: RulesIssue[] = [];
  const rules: CompiledRule[] = [];
  const variables = new Set<VariableName>();
  document.rules.forEach((rule, index) => {
    const compiled = compiledExpression(rule.when);
    if (compiled.ok) {
      for (const name of compiled.variables) variables.add(name);
      rules.push(
        Object.freeze({
          rule,
          index,
          run: compiled.run,
          fast: compiled.fast,
          positionOf: compiled.positionOf,
        }),
      );
    } else {
      for (const problem of compiled.problems) {
        issues.push({
          stage: "expression",
          ruleId: rule.id,
          path: `rules[${index}].when`,
          ...(problem.position ?? {}),
          message: problem.message,
        });
      }
    }
  });
  if (issues.length > 0) throw new InvalidRulesError(issues);
  return Object.freeze({
    document,
    default: document.default,
    ruleCount: document.rules.length,
    rules: Object.freeze(rules),
    variables: Object.freeze(VARIABLE_NAMES.filter((name) => variables.has(name))),
  });
}

type ParsedExpr = ReturnType<typeof parse>;
type Expr = ParsedExpr["expr"];
type Position = { line: number; column: number };
type Problem = { message: string; position?: Position };

type CompiledExpression =
  | {
      ok: true;
      run: CompiledRule["run"];
      fast: CompiledRule["fast"];
      positionOf: CompiledRule["positionOf"];
      variables: ReadonlySet<VariableName>;
    }
  | { ok: false; problems: Problem[] };

const env: CelEnv = celEnv();

// Calls the @bufbuild/cel planner implements itself rather than through env.funcs (planner.ts).
const PLANNER_CALLS: ReadonlySet<string> = new Set([
  "_[_]",
  "_[?_]",
  "_?._",
  "_?_:_",
  "_&&_",
  "_||_",
  "@not_strictly_false",
  "__not_strictly_false__",
]);

const VARIABLES: ReadonlySet<string> = new Set(VARIABLE_NAMES);

/**
 * Expressions compiled before, by their source: a compiled expression is a pure function of its
 * text, so a revision that keeps a rule's `when` does not parse, check and plan it again (about
 * 1.5 ms a rule, 13 ms for a process's first), which every worker does before it re-evaluates.
 */
const compiledBySource = new Map<string, CompiledExpression>();
/** Sources kept at most (their compiled forms are small); past it the cache starts again. */
const COMPILED_KEPT = 4096;

function compiledExpression(source: string): CompiledExpression {
  let compiled = compiledBySource.get(source);
  if (compiled === undefined) {
    compiled = compileExpression(source);
    if (compiledBySource.size >= COMPILED_KEPT) compiledBySource.clear();
    compiledBySource.set(source, compiled);
  }
  return compiled;
}

function compileExpression(source: string): CompiledExpression {
  let parsed: ParsedExpr;
  try {
    parsed = parse(source);
  } catch (err) {
    return { ok: false, problems: [syntaxProblem(err)] };
  }
  const positions = parsed.sourceInfo?.positions ?? {};
  const positionOf = (exprId: bigint | undefined): Position | undefined => {
    const offset = exprId === undefined ? undefined : positions[exprId.toString()];
    return offset === undefined ? undefined : lineColumn(source, offset);
  };
  const problems: Problem[] = [];
  const variables = new Set<VariableName>();
  checkExpr(parsed.expr, new Set(), {
    variables,
    report: (expr, message) => {
      // One report per message: `foo.a && foo.b` names the unknown `foo` once.
      if (problems.some((p) => p.message === message)) return;
      const position = positionOf(expr.id);
      problems.push(position === undefined ? { message } : { message, position });
    },
  });
  // An operator whose operand types are known and have no overload would fail on every request
  // (`subject.maxInstances > "3"`); one on a `dyn` operand (`input.x`) is checked when it runs.
  if (problems.length === 0) {
    for (const problem of typeProblems(parsed.expr)) {
      const position = positionOf(problem.expr.id);
      problems.push(
        position === undefined ? { message: problem.message } : { message: problem.message, position },
      );
    }
  }
  // A condition whose type is known and is not bool could never match (`when: kind`); a `dyn` one
  // (`input.x`) is checked when it runs.
  const type = typeOf(parsed.expr);
  if (type.kind !== "bool" && type.kind !== "dyn") {
    const message = `the condition is ${describeStaticType(type)}, not a bool`;
    const position = positionOf(parsed.expr?.id);
    problems.push(position === undefined ? { message } : { message, position });
  }
  if (problems.length > 0) return { ok: false, problems: problems.sort(byPosition) };
  let program: ReturnType<typeof plan>;
  try {
    program = plan(env, parsed);
  } catch (err) {
    return { ok: false, problems: [{ message: err instanceof Error ? err.message : String(err) }] };
  }
  // The bindings may hold CelErrors; @bufbuild/cel's ObjectActivation resolves those as errors
  // (activation.d.ts accepts `CelInput | CelError`), though plan()'s signature says CelInput only.
  const run = (bindings: CelBindings): CelResult => program(bindings as Record<string, CelInput>);
  return { ok: true, run, fast: fastCondition(parsed.expr) ?? null, positionOf, variables };
}

// @bufbuild/cel's parse() throws a peggy syntax error: `location.start` holds line and column and
// `rawMessage` the text without the `<input>:1:6:` prefix. Fall back to reading that prefix.
function syntaxProblem(err: unknown): Problem {
  const message = err instanceof Error ? err.message : String(err);
  const raw = hasKey(err, "rawMessage") && typeof err.rawMessage === "string" ? err.rawMessage : undefined;
  const start = hasKey(err, "location") && hasKey(err.location, "start") ? err.location.start : undefined;
  if (
    raw !== undefined &&
    hasKey(start, "line") &&
    hasKey(start, "column") &&
    typeof start.line === "number" &&
    typeof start.column === "number"
  ) {
    return { message: `syntax error: ${raw}`, position: { line: start.line, column: start.column } };
  }
  const match = /^<input>:(\d+):(\d+): (.*)$/s.exec(message);
  if (match?.[3] !== undefined) {
    return {
      message: `syntax error: ${match[3]}`,
      position: { line: Number(match[1]), column: Number(match[2]) },
    };
  }
  return { message: `syntax error: ${message}` };
}

function byPosition(a: Problem, b: Problem): number {
  const end = Number.POSITIVE_INFINITY;
  return (
    (a.position?.line ?? end) - (b.position?.line ?? end) ||
    (a.position?.column ?? 0) - (b.position?.column ?? 0) ||
    0
  );
}

function hasKey<K extends string>(value: unknown, key: K): value is Record<K, unknown> {
  return typeof value === "object" && value !== null && key in value;
}

function lineColumn(text: string, offset: number): Position {
  const before = text.slice(0, offset);
  const line = before.split("\n").length;
  return { line, column: offset - (before.lastIndexOf("\n") + 1) + 1 };
}

interface CheckContext {
  readonly variables: Set<VariableName>;
  readonly report: (expr: Expr, message: string) => void;
}

// @bufbuild/cel has no usable static check (its Checker rejects calls), so walk the AST: every
// identifier must be a documented variable, a comprehension variable in scope, a type name or a
// qualified message type name, and every function must exist in the environment.
function checkExpr(expr: Expr | undefined, scope: ReadonlySet<string>, ctx: CheckContext): void {
  if (expr === undefined) return;
  const kind = expr.exprKind;
  switch (kind.case) {
    case "identExpr":
      checkIdent(expr, kind.value.name, scope, ctx);
      return;
    case "selectExpr": {
      const qualified = kind.value.testOnly ? undefined : qualifiedName(expr);
      if (qualified !== undefined && isTypeReference(qualified, scope)) return;
      checkExpr(kind.value.operand, scope, ctx);
      return;
    }
    case "callExpr": {
      const name = kind.value.function;
      if (!PLANNER_CALLS.has(name) && env.funcs.find(name) === undefined) {
        ctx.report(expr, `unknown function "${name}"`);
      }
      checkExpr(kind.value.target, scope, ctx);
      for (const arg of kind.value.args) checkExpr(arg, scope, ctx);
      return;
    }
    case "listExpr":
      for (const element of kind.value.elements) checkExpr(element, scope, ctx);
      return;
    case "structExpr": {
      const name = kind.value.messageName;
      if (name !== "" && env.registry.getMessage(name.replace(/^\./, "")) === undefined) {
        ctx.report(expr, `unknown message type "${name}"`);
      }
      for (const entry of kind.value.entries) {
        if (entry.keyKind.case === "mapKey") checkExpr(entry.keyKind.value, scope, ctx);
        checkExpr(entry.value, scope, ctx);
      }
      return;
    }
    case "comprehensionExpr": {
      const c = kind.value;
      checkExpr(c.iterRange, scope, ctx);
      checkExpr(c.accuInit, scope, ctx);
      const loopScope = new Set([...scope, c.iterVar, c.accuVar]);
      if (c.iterVar2 !== "") loopScope.add(c.iterVar2);
      checkExpr(c.loopCondition, loopScope, ctx);
      checkExpr(c.loopStep, loopScope, ctx);
      checkExpr(c.result, new Set([...scope, c.accuVar]), ctx);
      return;
    }
    case "constExpr":
    case undefined:
      return;
  }
}

function checkIdent(expr: Expr, rawName: string, scope: ReadonlySet<string>, ctx: CheckContext): void {
  const name = rawName.replace(/^\./, "");
  if (scope.has(name)) return;
  if (VARIABLES.has(name)) {
    ctx.variables.add(name as VariableName);
    return;
  }
  if (TYPE_NAMES.has(name)) return;
  ctx.report(expr, `unknown variable "${name}" (the variables are ${VARIABLE_NAMES.join(", ")})`);
}

// `google.protobuf.Timestamp` is a chain of selects on the identifier `google`.
function qualifiedName(expr: Expr): string | undefined {
  const kind = expr.exprKind;
  if (kind.case === "identExpr") return kind.value.name.replace(/^\./, "");
  if (kind.case !== "selectExpr" || kind.value.testOnly || kind.value.operand === undefined) return undefined;
  const operand = qualifiedName(kind.value.operand);
  return operand === undefined ? undefined : `${operand}.${kind.value.field}`;
}

function isTypeReference(name: string, scope: ReadonlySet<string>): boolean {
  const root = name.slice(0, name.indexOf("."));
  if (scope.has(root) || VARIABLES.has(root)) return false;
  return env.registry.getMessage(name) !== undefined || env.registry.getEnum(name) !== undefined;
}
