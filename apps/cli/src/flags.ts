import { ArbiterError, ErrorCode } from "@arbiter/protocol";
import { decodePublicKey } from "@arbiter/trust";

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

/** A host public key's letters: `N`, then 55 of base32's alphabet. */
const HOST_KEY_SHAPE = /^N[A-Z2-7]{55}$/;

/**
 * Checks `--host` as a whole host public key: filters match it exactly, so a prefix or a typo would
 * match nothing and look like an empty log. Throws INVALID_CONFIG naming the flag. A key of a
 * host key's shape whose checksum is wrong is kept, and said on stderr: requests name their host
 * key unchecked, so records can hold such a key (a forged host), and are found only by it.
 */
export function checkHostFlag(host: string): string {
  try {
    // The codec ignores characters past the 56 of a key, so the length is checked here.
    if (host.length !== 56) throw new Error(`${host.length} characters`);
    decodePublicKey(host, "N");
  } catch (err) {
    if (HOST_KEY_SHAPE.test(host) && /checksum/.test((err as Error).message)) {
      process.stderr.write(
        `arbiter: --host ${JSON.stringify(host)}: not a valid host key (invalid checksum): no real host has it, but a request may name it; matching the records that name it exactly\n`,
      );
      return host;
    }
    throw new ArbiterError(
      ErrorCode.InvalidConfig,
      `--host ${JSON.stringify(host)}: expected a host public key in full (N…, 56 characters, as in the HOST column): ${(err as Error).message}`,
      { cause: err },
    );
  }
  return host;
}
