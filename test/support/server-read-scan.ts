import type { HostPolicyClient } from "@arbiter/host";
import { expect } from "vitest";
import { until } from "../harness/index.js";
import { applyRules, componentBody, defaultRules, untilRevisionReevaluated } from "./fanout.js";
import { type FanoutArbiter, startFanoutArbiter } from "./fanout-setup.js";
import { type CapturedLog, captureLog } from "./log-capture.js";

/** One worker that reads the active index from the server at every scan (no mirror), and its log. */
export interface ServerReadArbiter {
  readonly arbiter: FanoutArbiter;
  /** A host whose one cached permit every rules change to deny revokes. */
  readonly honest: HostPolicyClient;
  readonly log: CapturedLog;
}

/** Starts a {@link ServerReadArbiter} under rules that allow everything, the honest host's permit cached. */
export async function startServerReadArbiter(): Promise<ServerReadArbiter> {
  const log = captureLog("warn");
  const arbiter = await startFanoutArbiter({
    rules: defaultRules("allow"),
    workers: ["w1"],
    workerConfig: { indexMirrorMaxKeys: 0 },
    workerLogger: log.logger,
  });
  const honest = await arbiter.startHost();
  expect((await honest.evaluateStartComponent(componentBody("honest-app"))).permitted).toBe(true);
  return { arbiter, honest, log };
}

/**
 * Applies rules that deny everything and expects the revision re-evaluated at its first
 * delivery (no failure logged) and the honest host's permit revoked.
 */
export async function expectDenyReachesHonestHost({
  arbiter,
  honest,
  log,
}: ServerReadArbiter): Promise<void> {
  const revision = await applyRules(arbiter.admin, defaultRules("deny"));
  await untilRevisionReevaluated(arbiter.nc, revision, 60_000);
  await until(() => [...honest.cacheEntries().values()].every((e) => !e.permitted), {
    name: "the honest host's entry revoked",
    timeout: 15_000,
  });
  const failed = log.lines().filter((line) => String(line["msg"]).includes("failed on stream message"));
  expect(failed.map((line) => line["err"])).toEqual([]);
}
