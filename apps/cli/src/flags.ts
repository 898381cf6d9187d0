import { ArbiterError, ErrorCode } from "@arbiter/protocol";

/** Bounds of an integer flag; both inclusive. */
export interface IntegerBounds {
  readonly min?: number;
  readonly max?: number;
}

/**
 * Parses a flag (or environment) value as a decimal integer within `bounds`: digits only, with an
 * optional leading minus, so `abc`, `""`, `1.5`, `1e3` and `0x10` are refused rather than coerced.
 * Throws INVALID_CONFIG naming `flag` and the accepted range.
 */
export function parseIntegerFlag(value: string, flag: string, bounds: IntegerBounds = {}): number {
  const min = bounds.min ?? Number.MIN_SAFE_INTEGER;
  const max = bounds.max ?? Number.MAX_SAFE_INTEGER;
  const n = /^-?\d+$/.test(value.trim()) ? Number(value.trim()) : Number.NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    throw new ArbiterError(
      ErrorCode.InvalidConfig,
      `${flag} ${JSON.stringify(value)}: expected an integer ${describeBounds(bounds)}`,
    );
  }
  return n;
}

/** Like {@link parseIntegerFlag} for an optional flag: undefined stays undefined. */
export function parseOptionalIntegerFlag(
  value: string | undefined,
  flag: string,
  bounds: IntegerBounds = {},
): number | undefined {
  return value === undefined ? undefined : parseIntegerFlag(value, flag, bounds);
}

function describeBounds({ min, max }: IntegerBounds): string {
  if (min !== undefined && max !== undefined) return `from ${min} to ${max}`;
  if (min !== undefined) return `of ${min} or more`;
  if (max !== undefined) return `of ${max} or less`;
  return "";
}
