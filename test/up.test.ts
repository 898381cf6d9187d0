import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PolicyResponseV1 } from "@arbiter/protocol";
import { afterAll, describe, expect, it } from "vitest";
import { connectTo, until } from "./harness/index.js";
import { type RunningArbiter, runArbiter, spawnArbiter } from "./support/cli.js";
import { FIXTURES, fixtureBytes, fixtureJson } from "./support/fixtures.js";

describe("arbiter up", () => {
  const home = mkdtempSync(join(tmpdir(), "arbiter-up-"));
  // No NATS_URL and no admin key: `up` must work with no set-up, and so must the commands after it.
  const env = {
    ARBITER_HOME: home,
    ARBITER_LOG_LEVEL: "warn",
    NATS_URL: "",
    ARBITER_ADMIN_SEED: "",
    ARBITER_ADMIN_KEYS: "",
  };
  let up: RunningArbiter | undefined;

  afterAll(async () => {
    await up?.stop("SIGKILL");
    rmSync(home, { recursive: true, force: true });
  });

  it("prints its NATS URL, answers policy requests there, and stops on Ctrl-C", async () => {
    up = spawnArbiter(["up", "--workers", "2"], env);
    const url = await until(
      () =>
        /^NATS (nats:\/\/127\.0\.0\.1:\d+)$/m.exec(up!.stdout())?.[1] ??
        (up!.child.exitCode !== null && `exited: ${up!.stderr()}`),
      {
        name: "the NATS URL printed by arbiter up",
        timeout: 30_000,
      },
    );
    expect(url).toMatch(/^nats:\/\/127\.0\.0\.1:\d+$/);
    await until(() => up!.stdout().includes("Ctrl-C stops everything"), {
      name: "arbiter up ready",
      timeout: 30_000,
    });

    const nc = await connectTo(url);
    try {
      for (const fixture of FIXTURES) {
        const reply = await nc.request("wasmcloud.policy", fixtureBytes(fixture.name), { timeout: 5000 });
        const answer = PolicyResponseV1.parse(JSON.parse(reply.string()));
        expect(answer.requestId).toBe(fixtureJson(fixture.name).requestId);
        expect(answer.permitted, fixture.name).toBe(fixture.permitted);
      }
    } finally {
      await nc.close();
    }

    const second = await runArbiter(["up"], env);
    expect(second.code).toBe(2);
    expect(second.stderr).toMatch(/already running/);

    // The other commands find the local cluster and its admin key in ARBITER_HOME.
    const shown = await runArbiter(["rules", "show", "--json"], env);
    expect(shown.code, shown.stderr).toBe(0);
    expect(JSON.parse(shown.stdout)).toMatchObject({ revision: 4, document: { default: "deny" } });
    const applied = await runArbiter(
      ["rules", "apply", new URL("../deploy/rules/example.yaml", import.meta.url).pathname, "--json"],
      env,
    );
    expect(applied.code, applied.stderr).toBe(0);

    expect(await up.stop("SIGINT")).toBe(0);
    await expect(connectTo(url, { reconnect: false, timeout: 1000 })).rejects.toThrow();
  });
});
