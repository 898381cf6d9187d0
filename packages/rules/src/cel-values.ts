import { type CelError, type CelInput, celEnv, celError, isCelError, parse, plan } from "@bufbuild/cel";

/**
 * Converts a JSON value to what @bufbuild/cel binds. Integral numbers that are safe integers become
 * `bigint`, which CEL types as `int` (so `subject.maxInstances > 1` compares int to int); other
 * numbers stay `number` (CEL `double`). Objects become `Map`s of their own enumerable keys (also
 * objects without a prototype, which @bufbuild/cel would reject), `undefined` becomes null as in
 * JSON, and functions or symbols become null. Throws only on cyclic values (stack overflow).
 */
export function toCelValue(value: unknown): CelInput {
  switch (typeof value) {
    case "string":
    case "boolean":
    case "bigint":
      return value;
    case "number":
      return Number.isSafeInteger(value) ? BigInt(value) : value;
    case "object":
      if (value === null) return null;
      if (Array.isArray(value)) return value.map(toCelValue);
      if (value instanceof Date) return Number.isNaN(value.getTime()) ? null : value.toISOString();
      return new Map(
        Object.keys(value).map((key) => [key, toCelValue((value as Record<string, unknown>)[key])]),
      );
    default:
      return null;
  }
}

// CEL's own timestamp() builds the google.protobuf.Timestamp value, so no protobuf runtime needs to
// be imported here (@bufbuild/protobuf is only a dependency of @bufbuild/cel).
const timestampProgram = plan(celEnv(), parse("timestamp(t)"));
let lastTimestamp: { ms: number; value: CelInput | CelError } | undefined;

/**
 * Converts a `Date` to a CEL `timestamp` with millisecond precision. An invalid date, or one outside
 * CEL's range (years 1 to 9999), gives a CelError, so only rules that use it fail.
 */
export function toCelTimestamp(date: Date): CelInput | CelError {
  const ms = date.getTime();
  // One entry is enough: a worker re-evaluating many decisions uses one `now` after another.
  if (lastTimestamp?.ms === ms) return lastTimestamp.value;
  let value: CelInput | CelError;
  if (Number.isNaN(ms)) {
    value = celError(`invalid timestamp: ${String(date)}`);
  } else {
    const result = timestampProgram({ t: date.toISOString() });
    value = isCelError(result) ? result : (result as CelInput);
  }
  lastTimestamp = { ms, value };
  return value;
}
