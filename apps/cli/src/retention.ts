import { ArbiterError, ErrorCode } from "@arbiter/protocol";
import type { DecisionsRetention, RetentionChange } from "@arbiter/store";
import type { Command } from "commander";

/** Flags that set the decision stream's retention. */
export interface RetentionFlags {
  decisionsMaxAge?: string;
  decisionsMaxBytes?: string;
}

const AGE_UNITS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const BYTE_UNITS: Record<string, number> = { "": 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3, T: 1024 ** 4 };

/** Adds `--decisions-max-age` and `--decisions-max-bytes` to a command that creates the streams. */
export const retentionOptions = (command: Command) =>
  command
    .option(
      "--decisions-max-age <age>",
      "decisions older than this age out of the decision stream: 90s, 15m, 12h, 30d, or 0 for none (env ARBITER_DECISIONS_MAX_AGE); an existing stream's limit is updated, and the decisions already past it are deleted at once",
    )
    .option(
      "--decisions-max-bytes <size>",
      "the oldest decisions age out past this size: bytes, or with K, M, G, T; 0 for none (env ARBITER_DECISIONS_MAX_BYTES); an existing stream's limit is updated, and the decisions already past it are deleted at once",
    );

/**
 * The retention asked for by the flags, else `ARBITER_DECISIONS_MAX_AGE` and
 * `ARBITER_DECISIONS_MAX_BYTES`; undefined when neither says anything (the stream is left as it is).
 * Throws INVALID_CONFIG naming the flag or variable.
 */
export function resolveRetention(flags: RetentionFlags): DecisionsRetention | undefined {
  const age = pick(flags.decisionsMaxAge, "--decisions-max-age", "ARBITER_DECISIONS_MAX_AGE");
  const bytes = pick(flags.decisionsMaxBytes, "--decisions-max-bytes", "ARBITER_DECISIONS_MAX_BYTES");
  if (age === undefined && bytes === undefined) return undefined;
  return {
    ...(age === undefined ? {} : { maxAgeMs: parseAge(age.value, age.source) }),
    ...(bytes === undefined ? {} : { maxBytes: parseBytes(bytes.value, bytes.source) }),
  };
}

function pick(
  flag: string | undefined,
  name: string,
  env: string,
): { value: string; source: string } | undefined {
  if (flag !== undefined) return { value: flag, source: name };
  const value = process.env[env];
  return value ? { value, source: env } : undefined;
}

function parseAge(value: string, source: string): number {
  if (value.trim() === "0") return 0;
  const match = /^(\d+)([smhd])$/.exec(value.trim());
  if (!match || Number(match[1]) === 0) {
    throw new ArbiterError(
      ErrorCode.InvalidConfig,
      `${source} ${JSON.stringify(value)}: expected an age such as 90s, 15m, 12h or 30d, or 0 for none`,
    );
  }
  return Number(match[1]) * AGE_UNITS[match[2]!]!;
}

function parseBytes(value: string, source: string): number {
  const match = /^(\d+)([KMGT]?)$/i.exec(value.trim());
  const bytes = match ? Number(match[1]) * BYTE_UNITS[match[2]!.toUpperCase()]! : Number.NaN;
  if (!Number.isSafeInteger(bytes)) {
    throw new ArbiterError(
      ErrorCode.InvalidConfig,
      `${source} ${JSON.stringify(value)}: expected a size in bytes, or with K, M, G or T (1024-based), or 0 for none`,
    );
  }
  return bytes;
}

/** The limits as text: each its value, or "no …" when there is none. */
function describeLimits(limits: Required<DecisionsRetention>): string {
  const age = limits.maxAgeMs === 0 ? "no max age" : `max age ${limits.maxAgeMs / 1000}s`;
  const bytes = limits.maxBytes === 0 ? "no max bytes" : `max bytes ${limits.maxBytes}`;
  return `${age}, ${bytes}`;
}

/** The line saying what a retention change did, or null when the limits were already those. */
export function describeRetentionChange(stream: string, change: RetentionChange | undefined): string | null {
  if (!change) return null;
  const { before, after } = change;
  if (before.maxAgeMs === after.maxAgeMs && before.maxBytes === after.maxBytes) return null;
  const limited = after.maxAgeMs > 0 || after.maxBytes > 0;
  return `the retention of ${stream} changed from ${describeLimits(before)} to ${describeLimits(after)}${limited ? ": the oldest decisions age out past them" : ""}`;
}
