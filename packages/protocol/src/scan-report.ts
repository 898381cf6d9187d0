import { z } from "zod";
import { DeploymentId, WorkerPublicKey } from "./records.js";

/**
 * What a worker writes into the active index (key `s.<revision>`) once it has re-evaluated a rules
 * revision and published every override that revision causes: how much it looked at and changed,
 * when, and who did it. Written for a revision that changes nothing too; never for one a worker
 * skipped (a rules history that does not chain). `arbiter rules apply --wait` waits for it.
 */
export const ScanReportV1 = z.object({
  revision: z.number().int().positive(),
  /** The deployment of the rules re-evaluated: a report left from another deployment is not this one's. */
  deployment: DeploymentId.nullable(),
  /**
   * The SHA-256 (hex) of the revision's rule event as stored: a report put in the bucket before
   * the admin signed that event cannot name it, so it is not that revision's.
   */
  event: z.string().regex(/^[0-9a-f]{64}$/, "expected the SHA-256 (hex) of the revision's rule event"),
  /** Cached decisions re-evaluated. */
  entries: z.number().int().nonnegative(),
  /** Of those, the ones whose outcome (permitted or message) differs under this revision. */
  changed: z.number().int().nonnegative(),
  /** Overrides published on the changes topic for this revision. */
  overrides: z.number().int().nonnegative(),
  startedAt: z.iso.datetime({ offset: true }),
  finishedAt: z.iso.datetime({ offset: true }),
  /** The worker that re-evaluated the revision. */
  worker: z.object({ id: z.string().min(1), publicKey: WorkerPublicKey }),
});
/** A parsed {@link ScanReportV1}. */
export type ScanReportV1 = z.infer<typeof ScanReportV1>;
