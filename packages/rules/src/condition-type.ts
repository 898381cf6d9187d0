import type { parse } from "@bufbuild/cel";
import type { VariableName } from "./facts.js";

type Expr = ReturnType<typeof parse>["expr"];

// @bufbuild/cel 0.6.1 (the newest) has a Checker, but it types only constants and identifiers: it
// throws "Unsupported expression kind: callExpr" on `kind == "x"`, is not exported, and its types
// cannot describe a map with known keys. So the type of a condition is worked out here, over the
// parsed AST and the declared variable types below, to the depth the check needs.

/**
 * A CEL type as far as a condition's type can be told before it runs: scalars, lists, maps,
 * records of known fields (the facts Arbiter binds), and `dyn` where only the run can tell.
 */
export type CelStaticType =
  | {
      readonly kind:
        | "bool"
        | "int"
        | "uint"
        | "double"
        | "string"
        | "bytes"
        | "null"
        | "timestamp"
        | "duration"
        | "type"
        | "dyn";
    }
  | { readonly kind: "list"; readonly element: CelStaticType }
  | { readonly kind: "map"; readonly key: CelStaticType; readonly value: CelStaticType }
  /** A map with known keys, bound as a CEL map (`host`, `claims`…); any other key is `dyn`. */
  | { readonly kind: "record"; readonly fields: Readonly<Record<string, CelStaticType>> };

const scalar = (kind: Extract<CelStaticType, { kind: string }>["kind"]) => ({ kind }) as CelStaticType;
const BOOL = scalar("bool");
const INT = scalar("int");
const STRING = scalar("string");
const DYN = scalar("dyn");
const TIMESTAMP = scalar("timestamp");
const DURATION = scalar("duration");
const list = (element: CelStaticType): CelStaticType => ({ kind: "list", element });
const map = (key: CelStaticType, value: CelStaticType): CelStaticType => ({ kind: "map", key, value });
const record = (fields: Record<string, CelStaticType>): CelStaticType => ({ kind: "record", fields });
const STRING_MAP = map(STRING, STRING);

/**
 * The declared type of each variable, as the facts are bound (facts.ts, cel-values.ts): `subject`,
 * `claims` and `invocation` may also be null, which CEL compares with `==` whatever the type;
 * `claims.expiresAt` and `trust.issuer`/`trust.tokenId` are strings or null, so `dyn`; `input` is the request as received, so `dyn`.
 */
export const VARIABLE_TYPES: Readonly<Record<VariableName, CelStaticType>> = {
  kind: STRING,
  host: record({ publicKey: STRING, lattice: STRING, labels: STRING_MAP }),
  subject: record({ id: STRING, imageRef: STRING, annotations: STRING_MAP, maxInstances: INT }),
  claims: record({ publicKey: STRING, issuer: STRING, issuedAt: STRING, expiresAt: DYN, expired: BOOL }),
  invocation: record({ interface: STRING, function: STRING }),
  input: DYN,
  now: TIMESTAMP,
  trust: record({ verified: BOOL, reasons: list(STRING), signed: BOOL, issuer: DYN, tokenId: DYN }),
};

// Result types of the standard functions and operators whose result does not depend on operands.
const RESULTS: Readonly<Record<string, CelStaticType>> = {
  "_&&_": BOOL,
  "_||_": BOOL,
  "!_": BOOL,
  "_==_": BOOL,
  "_!=_": BOOL,
  "_<_": BOOL,
  "_<=_": BOOL,
  "_>_": BOOL,
  "_>=_": BOOL,
  "@in": BOOL,
  "@not_strictly_false": BOOL,
  __not_strictly_false__: BOOL,
  contains: BOOL,
  startsWith: BOOL,
  endsWith: BOOL,
  matches: BOOL,
  bool: BOOL,
  size: INT,
  int: INT,
  uint: scalar("uint"),
  double: scalar("double"),
  string: STRING,
  bytes: scalar("bytes"),
  type: scalar("type"),
  dyn: DYN,
  timestamp: TIMESTAMP,
  duration: DURATION,
  getFullYear: INT,
  getMonth: INT,
  getDayOfYear: INT,
  getDayOfMonth: INT,
  getDate: INT,
  getDayOfWeek: INT,
  getHours: INT,
  getMinutes: INT,
  getSeconds: INT,
  getMilliseconds: INT,
};

/** Type names, which are identifiers in CEL (`type(x) == int`). */
export const TYPE_NAMES: ReadonlySet<string> = new Set([
  "int",
  "uint",
  "double",
  "bool",
  "string",
  "bytes",
  "list",
  "map",
  "null_type",
  "type",
  "dyn",
]);

/**
 * The type of a parsed expression over {@link VARIABLE_TYPES}, `dyn` wherever it depends on
 * values only known when it runs (`input.x`, a mixed conditional). Names it does not know are
 * `dyn` too: reporting them is the caller's check. Never throws.
 */
export function typeOf(
  expr: Expr | undefined,
  scope: ReadonlyMap<string, CelStaticType> = new Map(),
): CelStaticType {
  return infer(expr, scope, undefined);
}

/** An operator or call whose operand types, known before it runs, CEL has no overload for. */
export interface TypeProblem {
  /** The call; its id gives the position. */
  readonly expr: Expr;
  readonly message: string;
}

/**
 * Every operator or call in `expr` whose operands have types known before it runs and CEL
 * has no overload for (`subject.maxInstances > "3"`, `!kind`, `kind + 1`), which would fail on
 * every request, and every `==`, `!=` or `in` between scalars of different types
 * (`subject.maxInstances == "3"`), which CEL answers the same whatever the facts. Operands
 * that are `dyn` (`input.x`, `claims.expiresAt`) are never reported: only the run can tell.
 */
export function typeProblems(expr: Expr | undefined): TypeProblem[] {
  const problems: TypeProblem[] = [];
  infer(expr, new Map(), (at, message) => problems.push({ expr: at, message }));
  return problems;
}

type Report = (expr: Expr, message: string) => void;

function infer(
  expr: Expr | undefined,
  scope: ReadonlyMap<string, CelStaticType>,
  report: Report | undefined,
): CelStaticType {
  if (expr === undefined) return DYN;
  const kind = expr.exprKind;
  switch (kind.case) {
    case "constExpr":
      return constantType(kind.value.constantKind.case);
    case "identExpr": {
      const name = kind.value.name.replace(/^\./, "");
      const local = scope.get(name);
      if (local !== undefined) return local;
      if (Object.hasOwn(VARIABLE_TYPES, name)) return VARIABLE_TYPES[name as VariableName];
      return TYPE_NAMES.has(name) ? scalar("type") : DYN;
    }
    case "selectExpr": {
      const operand = infer(kind.value.operand, scope, report);
      return kind.value.testOnly ? BOOL : member(operand, kind.value.field);
    }
    case "callExpr": {
      const { function: name, args } = kind.value;
      const operands = args.map((arg) => infer(arg, scope, report));
      const all =
        kind.value.target === undefined ? operands : [infer(kind.value.target, scope, report), ...operands];
      if (report !== undefined) {
        const problem = callProblem(name, all, kind.value.target !== undefined);
        if (problem !== undefined) report(expr, problem);
      }
      return callType(name, all);
    }
    case "listExpr":
      return list(common(kind.value.elements.map((element) => infer(element, scope, report))));
    case "structExpr": {
      if (kind.value.messageName !== "") {
        for (const entry of kind.value.entries) infer(entry.value, scope, report);
        return DYN;
      }
      const keys: CelStaticType[] = [];
      const values: CelStaticType[] = [];
      for (const entry of kind.value.entries) {
        if (entry.keyKind.case === "mapKey") keys.push(infer(entry.keyKind.value, scope, report));
        values.push(infer(entry.value, scope, report));
      }
      return map(common(keys), common(values));
    }
    case "comprehensionExpr": {
      // The standard macros never change the accumulator's type, so its initial value tells the
      // result's (`all`: bool, `map`: a list); the loop variables do not reach the result.
      const c = kind.value;
      const accu = new Map([...scope, [c.accuVar, infer(c.accuInit, scope, report)]]);
      if (report !== undefined) {
        const range = infer(c.iterRange, scope, report);
        const loop = new Map([...accu, [c.iterVar, c.iterVar2 === "" ? iterated(range) : DYN]]);
        if (c.iterVar2 !== "") loop.set(c.iterVar2, DYN);
        infer(c.loopCondition, loop, report);
        infer(c.loopStep, loop, report);
      }
      return infer(c.result, accu, report);
    }
    case undefined:
      return DYN;
  }
}

/** What a comprehension's variable is bound to: a list's elements, a map's keys. */
function iterated(range: CelStaticType): CelStaticType {
  if (range.kind === "list") return range.element;
  if (range.kind === "map") return range.key;
  if (range.kind === "record") return STRING;
  return DYN;
}

/** How a type reads in a message: `a string`, `a map`, `an int`. */
export function describeStaticType(type: CelStaticType): string {
  switch (type.kind) {
    case "record":
    case "map":
      return "a map";
    case "int":
    case "uint":
      return `an ${type.kind}`;
    case "null":
      return "null";
    case "bytes":
      return "bytes";
    default:
      return `a ${type.kind}`;
  }
}

function constantType(kind: string | undefined): CelStaticType {
  switch (kind) {
    case "boolValue":
      return BOOL;
    case "int64Value":
      return INT;
    case "uint64Value":
      return scalar("uint");
    case "doubleValue":
      return scalar("double");
    case "stringValue":
      return STRING;
    case "bytesValue":
      return scalar("bytes");
    case "nullValue":
      return scalar("null");
    case "durationValue":
      return DURATION;
    case "timestampValue":
      return TIMESTAMP;
    default:
      return DYN;
  }
}

function member(operand: CelStaticType, field: string): CelStaticType {
  if (operand.kind === "record")
    return Object.hasOwn(operand.fields, field) ? (operand.fields[field] ?? DYN) : DYN;
  if (operand.kind === "map") return operand.value;
  return DYN;
}

function callType(name: string, operands: readonly CelStaticType[]): CelStaticType {
  const fixed = RESULTS[name];
  if (fixed !== undefined) return fixed;
  const [a, b, c] = operands;
  switch (name) {
    case "_?_:_":
      return b !== undefined && c !== undefined ? common([b, c]) : DYN;
    case "_[_]":
      if (a?.kind === "list") return a.element;
      if (a?.kind === "map") return a.value;
      return DYN;
    case "-_":
      return a !== undefined && isNumeric(a) ? a : DYN;
    case "_-_":
      if (a?.kind === "timestamp" && b?.kind === "timestamp") return DURATION;
      if (a?.kind === "timestamp" && b?.kind === "duration") return TIMESTAMP;
      return arithmetic(a, b);
    case "_+_":
      if (a?.kind === "timestamp" && b?.kind === "duration") return TIMESTAMP;
      if (a?.kind === "duration" && b?.kind === "timestamp") return TIMESTAMP;
      if (a?.kind === "list" && b?.kind === "list") return list(common([a.element, b.element]));
      if (a?.kind === "string" && b?.kind === "string") return STRING;
      return arithmetic(a, b);
    case "_*_":
    case "_/_":
    case "_%_":
      return arithmetic(a, b);
    default:
      return DYN;
  }
}

function arithmetic(a: CelStaticType | undefined, b: CelStaticType | undefined): CelStaticType {
  if (a === undefined || b === undefined) return DYN;
  return (isNumeric(a) || a.kind === "duration") && same(a, b) ? a : DYN;
}

function isNumeric(type: CelStaticType): boolean {
  return type.kind === "int" || type.kind === "uint" || type.kind === "double";
}

/** The one type all of `types` have, else `dyn` (also for none). */
function common(types: readonly CelStaticType[]): CelStaticType {
  const [first, ...rest] = types;
  if (first === undefined) return DYN;
  return rest.every((type) => same(type, first)) ? first : DYN;
}

function same(a: CelStaticType, b: CelStaticType): boolean {
  if (a.kind !== b.kind) return false;
  if (a.kind === "list" && b.kind === "list") return same(a.element, b.element);
  if (a.kind === "map" && b.kind === "map") return same(a.key, b.key) && same(a.value, b.value);
  if (a.kind === "record" && b.kind === "record") return a === b;
  return true;
}

const OPERATORS: Readonly<Record<string, string>> = {
  "_<_": "<",
  "_<=_": "<=",
  "_>_": ">",
  "_>=_": ">=",
  "_+_": "+",
  "_-_": "-",
  "_*_": "*",
  "_/_": "/",
  "_%_": "%",
  "-_": "-",
  "!_": "!",
  "_&&_": "&&",
  "_||_": "||",
  "_?_:_": "?:",
  "@in": "in",
  "_[_]": "[]",
  "_==_": "==",
  "_!=_": "!=",
};

// Kinds a value of each known type can have at run time, as CEL sees them; a record is a map
// (or null, where the facts allow: either way no operator below takes it).
type Kind = CelStaticType["kind"];
const ORDERED: ReadonlySet<Kind> = new Set(["string", "bytes", "bool", "timestamp", "duration"]);
const ADDABLE: ReadonlySet<Kind> = new Set(["int", "uint", "double", "string", "bytes", "duration"]);
const SUBTRACTABLE: ReadonlySet<Kind> = new Set(["int", "uint", "double", "duration"]);
const SCALARS: ReadonlySet<Kind> = new Set([
  "bool",
  "int",
  "uint",
  "double",
  "string",
  "bytes",
  "timestamp",
  "duration",
  "type",
]);
const MAP_KEYS: ReadonlySet<Kind> = new Set(["int", "uint", "double", "bool", "string"]);
const STRING_TESTS: ReadonlySet<string> = new Set(["contains", "startsWith", "endsWith", "matches"]);

/**
 * Why CEL has no overload of `name` for `operands` (the target first for a method call), or
 * undefined when it has one or an operand is `dyn`. Mirrors @bufbuild/cel's runtime overloads:
 * ordering and equality across int, uint and double are allowed, `%` is only for int and uint.
 */
function callProblem(name: string, operands: readonly CelStaticType[], method: boolean): string | undefined {
  const [a, b] = operands;
  if (a === undefined) return undefined;
  const op = OPERATORS[name] ?? name;
  const known = (t: CelStaticType | undefined): t is CelStaticType => t !== undefined && t.kind !== "dyn";
  const pair = () => `no "${op}" between ${describeStaticType(a)} and ${describeStaticType(b ?? DYN)}`;
  switch (name) {
    case "_<_":
    case "_<=_":
    case "_>_":
    case "_>=_":
      if (!known(b) || (isNumeric(a) && isNumeric(b)) || (a.kind === b.kind && ORDERED.has(a.kind)))
        return undefined;
      return known(a) ? pair() : undefined;
    case "_+_":
      if (!known(a) || !known(b)) return undefined;
      if (a.kind === b.kind && (ADDABLE.has(a.kind) || a.kind === "list")) return undefined;
      if (
        (a.kind === "timestamp" && b.kind === "duration") ||
        (a.kind === "duration" && b.kind === "timestamp")
      )
        return undefined;
      return pair();
    case "_-_":
      if (!known(a) || !known(b)) return undefined;
      if (a.kind === b.kind && SUBTRACTABLE.has(a.kind)) return undefined;
      if (a.kind === "timestamp" && (b.kind === "timestamp" || b.kind === "duration")) return undefined;
      return pair();
    case "_*_":
    case "_/_":
      if (!known(a) || !known(b) || (a.kind === b.kind && isNumeric(a))) return undefined;
      return pair();
    case "_%_":
      if (!known(a) || !known(b) || (a.kind === b.kind && (a.kind === "int" || a.kind === "uint")))
        return undefined;
      return pair();
    case "-_":
      return known(a) && a.kind !== "int" && a.kind !== "double"
        ? `no "-" for ${describeStaticType(a)}`
        : undefined;
    case "!_":
      return known(a) && a.kind !== "bool"
        ? `no "!" for ${describeStaticType(a)}, only for a bool`
        : undefined;
    case "_&&_":
    case "_||_": {
      const wrong = operands.find((t) => known(t) && t.kind !== "bool");
      return wrong === undefined ? undefined : `"${op}" takes bools, not ${describeStaticType(wrong)}`;
    }
    case "_?_:_":
      return known(a) && a.kind !== "bool"
        ? `the test of "?:" is ${describeStaticType(a)}, not a bool`
        : undefined;
    case "_==_":
    case "_!=_":
      if (b === undefined || !neverEqual(a, b)) return undefined;
      return `"${op}" between ${describeStaticType(a)} and ${describeStaticType(b)} is always ${name === "_==_" ? "false" : "true"}`;
    case "@in": {
      if (!known(b)) return undefined;
      if ((b.kind === "map" || b.kind === "record") && known(a) && !MAP_KEYS.has(a.kind))
        return `no "in" of ${describeStaticType(a)} in a map: its keys are strings, numbers or bools`;
      if (b.kind === "list" || b.kind === "map" || b.kind === "record") {
        const inside = b.kind === "list" ? b.element : b.kind === "map" ? b.key : STRING;
        return neverEqual(a, inside)
          ? `"in" looks for ${describeStaticType(a)} among ${b.kind === "list" ? "elements" : "keys"} that are ${describeStaticType(inside)}: always false`
          : undefined;
      }
      return `no "in" on ${describeStaticType(b)}, only on a list or a map`;
    }
    case "_[_]":
      return known(a) && (SCALARS.has(a.kind) || a.kind === "null")
        ? `${describeStaticType(a)} cannot be indexed`
        : undefined;
    case "size":
      return known(a) &&
        (SCALARS.has(a.kind) || a.kind === "null") &&
        a.kind !== "string" &&
        a.kind !== "bytes"
        ? `no size() of ${describeStaticType(a)}`
        : undefined;
    default:
      if (!method || !STRING_TESTS.has(name)) return undefined;
      if (known(a) && a.kind !== "string")
        return `no ${name}() on ${describeStaticType(a)}, only on a string`;
      if (known(b) && b.kind !== "string") return `${name}() takes a string, not ${describeStaticType(b)}`;
      return undefined;
  }
}

/** True when values of `a` and `b` are known scalars that CEL never finds equal (`1 == "1"`). */
function neverEqual(a: CelStaticType, b: CelStaticType): boolean {
  if (!SCALARS.has(a.kind) || !SCALARS.has(b.kind)) return false;
  return a.kind !== b.kind && !(isNumeric(a) && isNumeric(b));
}
