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
 * `claims.expiresAt` is an int or null, so `dyn`; `input` is the request as received, so `dyn`.
 */
export const VARIABLE_TYPES: Readonly<Record<VariableName, CelStaticType>> = {
  kind: STRING,
  host: record({ publicKey: STRING, lattice: STRING, labels: STRING_MAP }),
  subject: record({ id: STRING, imageRef: STRING, annotations: STRING_MAP, maxInstances: INT }),
  claims: record({ publicKey: STRING, issuer: STRING, issuedAt: STRING, expiresAt: DYN, expired: BOOL }),
  invocation: record({ interface: STRING, function: STRING }),
  input: DYN,
  now: TIMESTAMP,
  trust: record({ verified: BOOL, reasons: list(STRING) }),
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
    case "selectExpr":
      return kind.value.testOnly ? BOOL : member(typeOf(kind.value.operand, scope), kind.value.field);
    case "callExpr": {
      const { function: name, args } = kind.value;
      const operands = args.map((arg) => typeOf(arg, scope));
      return callType(
        name,
        kind.value.target === undefined ? operands : [typeOf(kind.value.target, scope), ...operands],
      );
    }
    case "listExpr":
      return list(common(kind.value.elements.map((element) => typeOf(element, scope))));
    case "structExpr": {
      if (kind.value.messageName !== "") return DYN;
      const keys: CelStaticType[] = [];
      const values: CelStaticType[] = [];
      for (const entry of kind.value.entries) {
        if (entry.keyKind.case === "mapKey") keys.push(typeOf(entry.keyKind.value, scope));
        values.push(typeOf(entry.value, scope));
      }
      return map(common(keys), common(values));
    }
    case "comprehensionExpr": {
      // The standard macros never change the accumulator's type, so its initial value tells the
      // result's (`all`: bool, `map`: a list); the loop variables do not reach the result.
      const c = kind.value;
      return typeOf(c.result, new Map([...scope, [c.accuVar, typeOf(c.accuInit, scope)]]));
    }
    case undefined:
      return DYN;
  }
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
