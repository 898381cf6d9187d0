import { z } from "zod";

/** Lifecycle states shared by Arbiter's long-running parts. */
export const LifecycleState = z.enum(["starting", "ready", "degraded", "stopped"]);
/** One of the {@link LifecycleState} values. */
export type LifecycleState = z.infer<typeof LifecycleState>;

/**
 * What a worker answers on its status subject (`ResourceNames.statusSubject`): who it is, its
 * state and why (a reason whenever it is not ready), the rules revision it serves and the admin
 * keys whose rule events it accepts.
 */
export const WorkerStatusV1 = z.object({
  id: z.string(),
  publicKey: z.string(),
  state: LifecycleState,
  /** Why the worker is not ready; null when it is. */
  reason: z.string().nullable(),
  revision: z.number().int().nonnegative(),
  adminKeys: z.array(z.string()),
  /** The deployment of the rules the worker follows (null before a genesis event). */
  deployment: z.string().nullable().optional(),
  /** Whether the worker's key is enrolled (in the rules stream or by configuration). */
  enrolled: z.boolean().optional(),
  /**
   * Where the rules history stopped chaining for this worker, which then applies nothing after it
   * (and re-evaluates nothing): null while it chains. Absent from workers before this field.
   */
  broken: z.object({ revision: z.number().int().nonnegative(), reason: z.string() }).nullable().optional(),
  /**
   * Whether the worker publishes overrides on each host's own subject (`<changes topic>.<host
   * key>`) rather than the shared changes topic. Absent from workers before this field.
   */
  changesPerHost: z.boolean().optional(),
  /** The changes topic the worker publishes overrides on (or under, per host). Absent from workers before this field. */
  changesTopic: z.string().optional(),
  /** The worker's counters since it started (names as in the worker's `stats()`). */
  stats: z.record(z.string(), z.number()),
});
/** A worker's answer on the status subject. */
export type WorkerStatusV1 = z.infer<typeof WorkerStatusV1>;
