import type { WorkerStatusV1 } from "@arbiter/protocol";

/** Where the live workers publish overrides, taken together. */
export interface ChangesAgreement {
  /** All on the shared topic, all per host, or not all alike; null with no worker. */
  readonly changes: "shared" | "per-host" | "mixed" | null;
  /** What the disagreement means, naming the workers on each side; null when they agree. */
  readonly problem: string | null;
}

/**
 * Whether the workers publish the overrides to the same subjects: the same changes topic, and all
 * per host or none. The overrides of one revision go where the worker that re-evaluates it (or one
 * of its parts) publishes, so with workers that disagree a host hears only some of them. A worker
 * from before `changesTopic` was reported is taken to agree on the topic.
 */
export function changesAgreement(
  workers: readonly Pick<WorkerStatusV1, "id" | "changesPerHost" | "changesTopic">[],
): ChangesAgreement {
  if (workers.length === 0) return { changes: null, problem: null };
  const known = workers.map((w) => w.changesTopic).filter((t): t is string => t !== undefined);
  const topic = known[0];
  const destination = (w: (typeof workers)[number]) => {
    const base = w.changesTopic ?? topic ?? "the changes topic";
    return w.changesPerHost === true ? `${base}.<host key>` : base;
  };
  const groups = new Map<string, string[]>();
  for (const w of workers) {
    const at = destination(w);
    groups.set(at, [...(groups.get(at) ?? []), w.id]);
  }
  if (groups.size === 1) {
    return { changes: workers[0]!.changesPerHost === true ? "per-host" : "shared", problem: null };
  }
  const sides = [...groups].map(([at, ids]) => `${ids.join(", ")} on ${at}`).join("; ");
  return {
    changes: "mixed",
    problem: `the workers disagree on where overrides go (${sides}): the overrides of one revision go where the worker that re-evaluates it publishes, and a host hears only one of those subjects; start every worker with the same --changes-topic and --changes-per-host`,
  };
}
