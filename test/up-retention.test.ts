import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { resourceNames } from "@arbiter/protocol";
import { jetstreamManager } from "@nats-io/jetstream";
import { afterAll, describe, expect, it } from "vitest";
import { connectTo, until } from "./harness/index.js";
import { type RunningArbiter, spawnArbiter } from "./support/cli.js";

const names = resourceNames();

/** Waits for `up --json` to print its report (or to exit, which fails with its stderr). */
async function urlOf(up: RunningArbiter): Promise<string> {
  return until(
    () => {
      if (up.child.exitCode !== null)
        throw new Error(`arbiter up exited ${up.child.exitCode}: ${up.stderr()}`);
      try {
        return (JSON.parse(up.stdout()) as { url: string }).url;
      } catch {
        return null;
      }
    },
    { name: "the report of arbiter up --json", timeout: 45_000 },
  );
}

async function maxAgeSeconds(url: string): Promise<number> {
  const nc = await connectTo(url);
  try {
    const info = await (await jetstreamManager(nc)).streams.info(names.decisionsStream);
    return info.config.max_age / 1e9;
  } finally {
    await nc.close();
  }
}

describe("arbiter up --decisions-max-age", () => {
  const home = mkdtempSync(join(tmpdir(), "arbiter-up-retention-"));
  const env = {
    ARBITER_HOME: home,
    ARBITER_LOG_LEVEL: "info",
    ARBITER_LOG_FORMAT: "json",
    NATS_URL: "",
    ARBITER_ADMIN_SEED: "",
    ARBITER_ADMIN_KEYS: "",
    ARBITER_DECISIONS_MAX_AGE: "",
    ARBITER_DECISIONS_MAX_BYTES: "",
  };
  const running: RunningArbiter[] = [];
  const up = (args: string[], extra: Record<string, string> = {}) => {
    const child = spawnArbiter(["up", "--workers", "1", "--port", "0", "--json", ...args], {
      ...env,
      ...extra,
    });
    running.push(child);
    return child;
  };

  afterAll(async () => {
    for (const child of running) await child.stop("SIGKILL");
    rmSync(home, { recursive: true, force: true });
  });

  it("creates the decision stream with the retention asked for, and updates it on a restart that asks for another", async () => {
    const first = up(["--decisions-max-age", "1h"]);
    expect(await maxAgeSeconds(await urlOf(first))).toBe(3600);
    expect(await first.stop("SIGTERM"), first.stderr()).toBe(0);

    const second = up([], { ARBITER_DECISIONS_MAX_AGE: "2h" });
    expect(await maxAgeSeconds(await urlOf(second))).toBe(7200);
    expect(second.stderr()).toContain(
      `the retention of ${names.decisionsStream} changed from max age 3600s, no max bytes to max age 7200s, no max bytes`,
    );
    expect(await second.stop("SIGTERM"), second.stderr()).toBe(0);

    // Without the flags a restart leaves the stream's limits as they are.
    const third = up([]);
    expect(await maxAgeSeconds(await urlOf(third))).toBe(7200);
    expect(third.stderr()).not.toContain("the retention of");
    expect(await third.stop("SIGTERM"), third.stderr()).toBe(0);
  });
});
