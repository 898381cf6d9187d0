import { ArbiterError, ErrorCode } from "@arbiter/protocol";

const UNITS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/**
 * Parses a point in time given as an ISO-8601 date/time or as an age such as `90s`, `15m`, `2h`
 * or `7d` (that long before `now`). Throws INVALID_CONFIG naming the flag otherwise.
 */
export function parseTime(value: string, flag: string, now: Date = new Date()): Date {
  const age = /^(\d+)([smhd])$/.exec(value.trim());
  if (age) return new Date(now.getTime() - Number(age[1]) * UNITS[age[2]!]!);
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) {
    throw new ArbiterError(
      ErrorCode.InvalidConfig,
      `${flag} ${JSON.stringify(value)}: expected an ISO-8601 time (2026-01-31T12:00:00Z) or an age like 15m, 2h, 7d`,
    );
  }
  return date;
}
