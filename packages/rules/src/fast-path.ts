import type { parse } from "@bufbuild/cel";
import { type EvaluationFacts, VARIABLE_NAMES, type VariableName } from "./facts.js";

// Most rules are plain comparisons of strings, booleans and null joined by `&&`, `||` and `!`
// (`kind in ["startComponent"] && claims != null && claims.issuer == "A…"`), and string prefix,
// suffix and substring tests (`subject.imageRef.startsWith("ghcr.io/acme/")`). For those, running
// @bufbuild/cel's planned program costs more than the rest of a decision's rules work: binding every
// fact as a CEL value, and resolving each name and call through the interpreter. A fast condition
// evaluates such an expression on the facts directly, and decides only where the outcome is a plain
// bool that @bufbuild/cel gives too; wherever CEL could give an error, compare numbers, or compare
// objects, it answers UNDECIDED and the rule is run by @bufbuild/cel as before.

type Expr = ReturnType<typeof parse>["expr"];

/** What a fast condition answers when @bufbuild/cel must evaluate the rule. */
export const UNDECIDED: unique symbol = Symbol("undecided");

/** A rule's `when` for the plain cases: true or false as CEL would answer, or {@link UNDECIDED}. */
export type FastCondition = (facts: EvaluationFacts) => boolean | typeof UNDECIDED;

// A value seen by a fast condition: what CEL would see, or UNDECIDED where it is not a string, bool,
// null or map (numbers, lists, timestamps), or where CEL would fail.
type Plain = string | boolean | null | PlainMap | typeof UNDECIDED;
type PlainMap = { readonly [key: string]: unknown };
type Node = (facts: EvaluationFacts) => Plain;

// Facts that CEL sees as string, bool, null or map (`now`, a timestamp, is left to CEL).
const FAST_VARIABLES: ReadonlySet<VariableName> = new Set(VARIABLE_NAMES.filter((name) => name !== "now"));

/**
 * A fast condition for an expression built only of string, bool and null constants, the variables
 * other than `now`, field selections, `==`, `!=`, `in` on a list of such constants, `&&`, `||`,
 * `!` and the string methods `startsWith`, `endsWith` and `contains`; undefined for any other
 * expression, which @bufbuild/cel alone evaluates.
 */
export function fastCondition(expr: Expr): FastCondition | undefined {
  const node = compile(expr);
  if (node === undefined) return undefined;
  return (facts) => {
    const value = node(facts);
    return typeof value === "boolean" ? value : UNDECIDED;
  };
}

function compile(expr: Expr | undefined): Node | undefined {
  if (expr === undefined) return undefined;
  const kind = expr.exprKind;
  switch (kind.case) {
    case "constExpr": {
      const constant = constantOf(expr);
      return constant === UNDECIDED ? undefined : () => constant;
    }
    case "identExpr": {
      const name = kind.value.name as VariableName;
      if (!FAST_VARIABLES.has(name)) return undefined;
      return (facts) => plain(facts[name]);
    }
    case "selectExpr": {
      if (kind.value.testOnly) return undefined;
      const operand = compile(kind.value.operand);
      if (operand === undefined) return undefined;
      const field = kind.value.field;
      return (facts) => {
        const map = operand(facts);
        // CEL fails on a missing key and on a field of anything but a map.
        if (!isPlainMap(map) || !Object.prototype.propertyIsEnumerable.call(map, field)) return UNDECIDED;
        return plain(map[field]);
      };
    }
    case "callExpr":
      return kind.value.target === undefined
        ? compileCall(kind.value.function, kind.value.args)
        : compileMethod(kind.value.function, kind.value.target, kind.value.args);
    default:
      return undefined;
  }
}

function compileCall(name: string, argExprs: readonly Expr[]): Node | undefined {
  if (name === "@in") return compileIn(argExprs);
  const args = argExprs.map(compile);
  if (args.some((arg) => arg === undefined)) return undefined;
  const [a, b] = args as Node[];
  switch (name) {
    case "_==_":
      return args.length === 2 ? (facts) => equals(a!(facts), b!(facts)) : undefined;
    case "_!=_":
      return args.length === 2 ? (facts) => not(equals(a!(facts), b!(facts))) : undefined;
    case "!_":
      return args.length === 1 ? (facts) => not(a!(facts)) : undefined;
    case "_&&_":
      return args.length === 2 ? logical(a!, b!, false) : undefined;
    case "_||_":
      return args.length === 2 ? logical(a!, b!, true) : undefined;
    default:
      return undefined;
  }
}

// The string methods @bufbuild/cel implements as JavaScript's own (`"a".startsWith("b")` is
// String.prototype.startsWith): decided when receiver and argument are strings, else CEL's error.
const STRING_METHODS: Readonly<Record<string, (receiver: string, arg: string) => boolean>> = {
  startsWith: (receiver, arg) => receiver.startsWith(arg),
  endsWith: (receiver, arg) => receiver.endsWith(arg),
  contains: (receiver, arg) => receiver.includes(arg),
};

function compileMethod(name: string, targetExpr: Expr, argExprs: readonly Expr[]): Node | undefined {
  const method = Object.hasOwn(STRING_METHODS, name) ? STRING_METHODS[name] : undefined;
  if (method === undefined || argExprs.length !== 1) return undefined;
  const target = compile(targetExpr);
  const arg = compile(argExprs[0]);
  if (target === undefined || arg === undefined) return undefined;
  return (facts) => {
    const receiver = target(facts);
    if (typeof receiver !== "string") return UNDECIDED;
    const value = arg(facts);
    return typeof value === "string" ? method(receiver, value) : UNDECIDED;
  };
}

// CEL's `&&` (absorbing false) and `||` (absorbing true): the absorbing value wins even over an
// error on the other side; otherwise both sides must be bools.
function logical(a: Node, b: Node, absorbing: boolean): Node {
  return (facts) => {
    const left = a(facts);
    if (left === absorbing) return absorbing;
    const right = b(facts);
    if (right === absorbing) return left === !absorbing ? absorbing : UNDECIDED;
    return left === !absorbing && right === !absorbing ? !absorbing : UNDECIDED;
  };
}

// `x in [c1, c2, …]` with constant elements: whether x equals one of them.
function compileIn(argExprs: readonly Expr[]): Node | undefined {
  const [valueExpr, listExpr] = argExprs;
  if (argExprs.length !== 2 || listExpr?.exprKind.case !== "listExpr") return undefined;
  if (listExpr.exprKind.value.optionalIndices.length > 0) return undefined;
  const elements = listExpr.exprKind.value.elements.map(constantOf);
  if (elements.some((element) => element === UNDECIDED)) return undefined;
  const value = compile(valueExpr);
  if (value === undefined) return undefined;
  return (facts) => {
    const x = value(facts);
    if (x === UNDECIDED || isPlainMap(x)) return UNDECIDED;
    return elements.includes(x);
  };
}

function constantOf(expr: Expr | undefined): string | boolean | null | typeof UNDECIDED {
  if (expr?.exprKind.case !== "constExpr") return UNDECIDED;
  const constant = expr.exprKind.value.constantKind;
  switch (constant.case) {
    case "stringValue":
    case "boolValue":
      return constant.value;
    case "nullValue":
      return null;
    default:
      return UNDECIDED;
  }
}

// CEL's equality across types is false (heterogeneous equality, as @bufbuild/cel implements it);
// two maps are compared by content, which is left to CEL.
function equals(a: Plain, b: Plain): Plain {
  if (a === UNDECIDED || b === UNDECIDED) return UNDECIDED;
  if (isPlainMap(a) && isPlainMap(b)) return UNDECIDED;
  return a === b;
}

function not(value: Plain): Plain {
  return typeof value === "boolean" ? !value : UNDECIDED;
}

// What CEL sees of a JS fact (as toCelValue binds it), for strings, bools, null and maps.
function plain(value: unknown): Plain {
  switch (typeof value) {
    case "string":
    case "boolean":
      return value;
    case "undefined":
      return null;
    case "object":
      if (value === null) return null;
      return Array.isArray(value) || value instanceof Date ? UNDECIDED : (value as PlainMap);
    default:
      return UNDECIDED;
  }
}

function isPlainMap(value: Plain): value is PlainMap {
  return typeof value === "object" && value !== null;
}
