import { defineConfig } from "vitest/config";
import { CORE_TESTS, HARNESS_CHECK } from "./test/peers/core-tests.js";
import { cachedNatsServers, peersDir } from "./test/peers/peers-cache.js";

// `npm run test:peers`: the interoperability suite against real third-party programs built into the
// peers cache by `npm run peers`. Not part of `npm test`. A missing peer fails its test, naming the
// command that builds it; nothing is skipped.

const natsServers = cachedNatsServers();
console.log(
  `peers cache ${peersDir()}: nats-server ${natsServers.map((s) => s.version).join(", ") || "none"}; ` +
    `core tests run against each: ${CORE_TESTS.join(", ")}`,
);

const shared = { testTimeout: 60_000, hookTimeout: 60_000, maxWorkers: 2 } as const;

export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: "peers",
          include: ["test/peers/**/*.peers.ts"],
          sequence: { groupOrder: 0 },
          ...shared,
        },
      },
      // One project per release, one after another (two cores): the harness honours NATS_SERVER_BIN in
      // every test of the project.
      ...natsServers.map((natsServer, i) => ({
        test: {
          name: `nats-server ${natsServer.version}`,
          sequence: { groupOrder: i + 1 },
          include: [HARNESS_CHECK, ...CORE_TESTS],
          env: { NATS_SERVER_BIN: natsServer.bin },
          provide: { natsServer },
          ...shared,
        },
      })),
    ],
  },
});
