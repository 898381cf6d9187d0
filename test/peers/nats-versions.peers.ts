import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { startNatsServer } from "../harness/index.js";
import { CORE_TESTS } from "./core-tests.js";
import { buildHint, cachedNatsServers } from "./peers-cache.js";

// The nats-server releases in the peers cache: vitest.peers.config.ts runs Arbiter's core integration
// tests once against each (projects "nats-server vX.Y.Z"); this file checks that the set is the one
// operators run and that each binary is what its folder says.

const OLDEST_LINE = [2, 10];

function atLeastOldestLine(version: string): boolean {
  const [major = 0, minor = 0] = version.slice(1).split(".").map(Number);
  return major > (OLDEST_LINE[0] ?? 0) || (major === OLDEST_LINE[0] && minor >= (OLDEST_LINE[1] ?? 0));
}

describe("nats-server releases in the peers cache", () => {
  it("holds at least three releases from 2.10 on, each reporting its own version", () => {
    const servers = cachedNatsServers().filter((server) => atLeastOldestLine(server.version));
    expect(
      servers.length,
      `nats-server releases from 2.10 on in the cache: ${servers.map((s) => s.version).join(", ") || "none"}; ${buildHint("nats")}`,
    ).toBeGreaterThanOrEqual(3);
    for (const server of servers) {
      expect(execFileSync(server.bin, ["--version"], { encoding: "utf8" }).trim()).toBe(
        `nats-server: ${server.version}`,
      );
    }
    console.log(`nats-server releases under test: ${servers.map((s) => s.version).join(", ")}`);
  });

  it("runs core test files that all exist (a renamed file would otherwise drop out unseen)", () => {
    const missing = CORE_TESTS.filter((file) => !existsSync(new URL(`../../${file}`, import.meta.url)));
    expect(missing, "core test files named in test/peers/core-tests.ts that are gone").toEqual([]);
  });

  it("starts each release with JetStream through the harness", async () => {
    for (const server of cachedNatsServers()) {
      await using running = await startNatsServer({ binary: server.bin });
      const varz = (await (await fetch(`${running.monitorUrl}/varz`)).json()) as {
        version: string;
        jetstream?: { config?: unknown };
      };
      expect(`v${varz.version}`).toBe(server.version);
      expect(varz.jetstream?.config, `JetStream on ${server.version}`).toBeDefined();
    }
  });
});
