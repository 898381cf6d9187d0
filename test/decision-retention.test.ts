import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { resourceNames } from "@arbiter/protocol";
import { jetstreamManager } from "@nats-io/jetstream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { until } from "./harness/index.js";
import { configuredWorkerKey, type SingleNodeArbiter, startSingleNodeArbiter } from "./support/arbiter.js";
import { runArbiter } from "./support/cli.js";
import { exampleRulesText, fixtureBytes } from "./support/fixtures.js";

const names = resourceNames();

describe("the decision stream's retention", () => {
  const key = configuredWorkerKey();
  const dir = mkdtempSync(join(tmpdir(), "arbiter-retention-"));
  const rules = join(dir, "rules.yaml");
  let arbiter: SingleNodeArbiter;
  let env: Record<string, string>;

  beforeAll(async () => {
    arbiter = await startSingleNodeArbiter(key);
    writeFileSync(rules, exampleRulesText());
    env = {
      NATS_URL: arbiter.server.url,
      ARBITER_ADMIN_SEED: arbiter.adminSeed,
      ARBITER_ADMIN_KEYS: arbiter.signer.publicKey,
      ARBITER_HOME: "/nonexistent-arbiter-home",
      ARBITER_LOG_LEVEL: "warn",
      ARBITER_WORKER_KEYS: key.workerKeys.join(","),
      ARBITER_DECISIONS_MAX_AGE: "",
      ARBITER_DECISIONS_MAX_BYTES: "",
    };
  });

  afterAll(async () => {
    await arbiter?.stop();
  });

  async function limits(): Promise<{ maxAge: number; maxBytes: number; firstSeq: number }> {
    const info = await (await jetstreamManager(arbiter.nc)).streams.info(names.decisionsStream);
    return { maxAge: info.config.max_age, maxBytes: info.config.max_bytes, firstSeq: info.state.first_seq };
  }

  it("an admin command updates an existing stream's limits when asked, and leaves them otherwise", async () => {
    const set = await runArbiter(
      ["rules", "apply", rules, "--decisions-max-age", "30d", "--decisions-max-bytes", "1G", "--json"],
      env,
    );
    expect(set.code, set.stderr).toBe(0);
    expect(set.stderr).toContain(
      `the retention of ${names.decisionsStream} changed from no max age, no max bytes to max age 2592000s, max bytes 1073741824`,
    );
    expect(await limits()).toMatchObject({ maxAge: 30 * 86_400 * 1e9, maxBytes: 1024 ** 3 });
    const kept = await runArbiter(["rules", "apply", rules, "--json"], env);
    expect(kept.code, kept.stderr).toBe(0);
    expect(kept.stderr).not.toContain("retention");
    expect(await limits()).toMatchObject({ maxAge: 30 * 86_400 * 1e9, maxBytes: 1024 ** 3 });
    const cleared = await runArbiter(["rules", "apply", rules, "--json"], {
      ...env,
      ARBITER_DECISIONS_MAX_AGE: "0",
      ARBITER_DECISIONS_MAX_BYTES: "0",
    });
    expect(cleared.code, cleared.stderr).toBe(0);
    expect(await limits()).toMatchObject({ maxAge: 0, maxBytes: -1 });
    const bad = await runArbiter(["rules", "apply", rules, "--decisions-max-age", "soon"], env);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--decisions-max-age "soon": expected an age such as 90s');
  });

  it("old records age out, and audit verify and export still pass, naming the retention boundary", async () => {
    await arbiter.ask(fixtureBytes("start-provider"));
    await arbiter.ask(fixtureBytes("start-component"));
    const set = await runArbiter(["rules", "apply", rules, "--decisions-max-age", "2s"], env);
    expect(set.code, set.stderr).toBe(0);
    await until(async () => (await limits()).firstSeq > 2, {
      name: "the first decisions aged out",
      timeout: 20_000,
    });
    await arbiter.ask(fixtureBytes("start-provider"));
    const live = await runArbiter(["audit", "verify", "--json"], env);
    expect(live.code, live.stdout).toBe(0);
    const report = JSON.parse(live.stdout) as {
      valid: boolean;
      retention: { firstSeq: number; note: string };
    };
    expect(report.valid).toBe(true);
    expect(report.retention.note).toMatch(/^records before seq \d+ are past retention$/);
    expect(report.retention.firstSeq).toBeGreaterThan(2);
    const text = await runArbiter(["audit", "verify"], env);
    expect(text.stdout).toMatch(/records before seq \d+ are past retention/);

    const file = join(dir, "aged.jsonl");
    const exported = await runArbiter(["decisions", "export", "--output", file], env);
    expect(exported.code, exported.stderr).toBe(0);
    expect(exported.stdout).toMatch(/records before seq \d+ are past retention/);
    const offline = await runArbiter(["audit", "verify", "--file", file, "--json"], env);
    expect(offline.code, offline.stdout).toBe(0);
    expect(JSON.parse(offline.stdout)).toMatchObject({
      valid: true,
      retention: { note: expect.stringMatching(/^records before seq \d+ are past retention$/) },
    });
  });
});
