import type { CachedNatsServer } from "./peers-cache.js";

/**
 * Arbiter's integration tests that vitest.peers.config.ts runs once per nats-server release in the
 * peers cache: the decision path, the JetStream store, rule trust, the reference host client,
 * clusters, the shipped permissions, reconnects, log outages, draining, expiry timers (a work queue
 * with a per-subject limit, NAKs with a delay), re-evaluation batches (a filtered consumer's ack floor)
 * and the harness itself.
 * Left out: the CLI, `up`, the benchmark, overload and fuzzing (slow, and not about the server).
 */
export const CORE_TESTS: readonly string[] = [
  "test/decision-path.test.ts",
  "test/store-jetstream.test.ts",
  "test/rules-trust.test.ts",
  "test/host-client.test.ts",
  "test/cluster.test.ts",
  "test/attack-permissions.test.ts",
  "test/reconnect.test.ts",
  "test/log-unavailable.test.ts",
  "test/worker-drain.test.ts",
  "test/embedded-nats.test.ts",
  "test/expiry-timers-jetstream.test.ts",
  "test/revocation-expiry.test.ts",
  "test/reevaluation-batches.test.ts",
];

/** Run first in each release's project: checks that the harness really starts that release. */
export const HARNESS_CHECK = "test/peers/harness-binary.core.ts";

declare module "vitest" {
  /** What vitest.peers.config.ts provides to each release's project. */
  export interface ProvidedContext {
    natsServer: CachedNatsServer;
  }
}
