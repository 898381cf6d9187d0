import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DEFAULT_CHANGES_TOPIC } from "@arbiter/protocol";
import { generateKey } from "@arbiter/trust";
import { afterAll, describe, expect, it } from "vitest";
import { connectTo, until } from "./harness/index.js";
import { type RunningArbiter, runArbiter, spawnArbiter } from "./support/cli.js";
import { componentBody, startHost } from "./support/fanout.js";

describe("arbiter up --changes-per-host", () => {
  const home = mkdtempSync(join(tmpdir(), "arbiter-up-per-host-"));
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

  it("runs every worker per host: a host on its own subject gets its override, the shared topic none", async () => {
    up = spawnArbiter(["up", "--workers", "2", "--port", "0", "--changes-per-host", "--json"], env);
    const started = await until(
      () => {
        const line = up!.stdout().trim();
        if (up!.child.exitCode !== null) return `exited: ${up!.stderr()}`;
        try {
          return JSON.parse(line) as { url: string; changesPerHost: boolean };
        } catch {
          return undefined;
        }
      },
      { name: "arbiter up's report", timeout: 60_000 },
    );
    expect(started).toMatchObject({ changesPerHost: true });
    if (typeof started === "string") return;
    const status = await runArbiter(["status", "--json"], env);
    expect(status.code, status.stderr).toBe(0);
    expect(JSON.parse(status.stdout)).toMatchObject({ healthy: true, changes: "per-host" });

    await using nc = await connectTo(started.url);
    const shared: string[] = [];
    nc.subscribe(DEFAULT_CHANGES_TOPIC, {
      callback: (_e, m) => {
        shared.push(m.string());
      },
    });
    const key = generateKey("N").publicKey;
    const host = await startHost(nc, { changesTopic: `${DEFAULT_CHANGES_TOPIC}.${key}` }, key);
    // The example rules deny an unsigned component.
    expect((await host.evaluateStartComponent(componentBody("unsigned"))).permitted).toBe(false);
    const rules = join(home, "allow.yaml");
    writeFileSync(rules, "version: 1\ndefault: allow\nrules: []\n");
    const applied = await runArbiter(["rules", "apply", rules, "--wait", "--json"], env);
    expect(applied.code, applied.stderr).toBe(0);
    expect(JSON.parse(applied.stdout)).toMatchObject({ overrides: 1 });
    await until(() => host.stats().overridesApplied === 1, {
      name: "the override on the host's own subject",
    });
    expect([...host.cacheEntries().values()].every((e) => e.permitted)).toBe(true);
    await nc.flush();
    expect(shared).toEqual([]);
    await host.stop();
    expect(await up.stop("SIGINT")).toBe(0);
  }, 120_000);
});
