import { defineConfig } from "vitest/config";
import { cachedNatsServers, peersDir } from "./test/peers/peers-cache.js";

// `npm run test:peers`: the interoperability suite against real third-party programs built into the
// peers cache by `npm run peers`. Not part of `npm test`. A missing peer fails its test, naming the
// command that builds it; nothing is skipped.

/** Arbiter's core integration tests, run once against every nats-server release in the cache. */
const CORE_TESTS = [
  "test/decision-path.test.ts",
  "test/store-jetstream.test.ts",
  "test/rules-trust.test.ts",
  "test/host-client.test.ts",
];

const natsServers = cachedNatsServers();
console.log(
  `peers cache ${peersDir()}: nats-server ${natsServers.map((s) => s.version).join(", ") || "none"} ` +
    `(core tests: ${CORE_TESTS.join(", ")})`,
);

const shared = { testTimeout: 60_000, hookTimeout: 60_000, maxWorkers: 2 } as const;

export default defineConfig({
  test: {
    projects: [
      { test: { name: "peers", include: ["test/peers/**/*.peers.ts"], ...shared } },
      ...natsServers.map((server) => ({
        test: {
          name: `nats-server ${server.version}`,
          include: CORE_TESTS,
          env: { NATS_SERVER_BIN: server.bin },
          ...shared,
        },
      })),
    ],
  },
});
