import { z } from "zod";

/**
 * Which re-evaluation a part belongs to: the SHA-256 (hex) of its revision's rule event as stored,
 * the hash the next event names as `prev`. Nobody can name it before the admin has signed that
 * event, so records stored ahead of a revision cannot stand in for its parts.
 */
const ScanId = z.string().regex(/^[0-9a-f]{64}$/, "expected the SHA-256 (hex) of the revision's rule event");

/** An active-index key (`e.<hash>.<hash>`, base64url SHA-256 tokens). */
const ActiveEntryKey = z.string().regex(/^e\.[A-Za-z0-9_-]{1,64}\.[A-Za-z0-9_-]{1,64}$/);

/**
 * One part of the re-evaluation of a rules revision, published by the worker that took the
 * revision for any worker to do: the active-index keys it covers (a run of the sorted listing,
 * so a host's entries stay together).
 */
export const ScanPartV1 = z.object({
  revision: z.number().int().positive(),
  scan: ScanId,
  part: z.number().int().nonnegative(),
  parts: z.number().int().positive(),
  keys: z.array(ActiveEntryKey).max(100_000),
});
/** A {@link ScanPartV1} as parsed. */
export type ScanPartV1 = z.infer<typeof ScanPartV1>;

/** What a worker records once it has done one {@link ScanPartV1}: every override of it is out. */
export const ScanPartDoneV1 = z.object({
  revision: z.number().int().positive(),
  /** The `scan` of the part done. */
  scan: ScanId,
  part: z.number().int().nonnegative(),
  /** The worker that did it (its id). */
  worker: z.string().max(256),
  /** Entries read, entries whose outcome changed, overrides published. */
  scanned: z.number().int().nonnegative(),
  changed: z.number().int().nonnegative(),
  overrides: z.number().int().nonnegative(),
});
/** A {@link ScanPartDoneV1} as parsed. */
export type ScanPartDoneV1 = z.infer<typeof ScanPartDoneV1>;
