import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { runArbiter } from "./support/cli.js";

describe("arbiter nats config into a folder it should not write", () => {
  const root = mkdtempSync(join(tmpdir(), "arbiter-operator-nats-config-"));

  afterAll(() => rmSync(root, { recursive: true, force: true }));

  // The password form wrote its single-node.conf and cluster-node.conf over those of an
  // operator-mode folder: the server started from it ran password users, and every .creds file of
  // the deployment (the hosts' JWTs) was refused.
  it("refuses the password form in a folder of `nats config --jwt`, changing no file", async () => {
    const dir = join(root, "jwt");
    const made = await runArbiter(["nats", "config", dir, "--jwt"]);
    expect(made.code, made.stderr).toBe(0);
    const before = Object.fromEntries(readdirSync(dir).map((f) => [f, readFileSync(join(dir, f), "utf8")]));
    for (const json of [[], ["--json"]]) {
      const again = await runArbiter(["nats", "config", dir, ...json]);
      expect(again.code, again.stderr).toBe(2);
      expect(again.stdout).toBe("");
      expect(again.stderr).toContain(`${join(dir, "operator.json")} exists: that folder holds`);
    }
    const after = Object.fromEntries(readdirSync(dir).map((f) => [f, readFileSync(join(dir, f), "utf8")]));
    expect(after).toEqual(before);
  });

  // A worker refuses the same subject for requests and changes; the configuration was written anyway.
  it("refuses a changes topic that is the policy topic, as a worker does", async () => {
    const dir = join(root, "same");
    const same = await runArbiter(["nats", "config", dir, "--changes-topic", "wasmcloud.policy", "--json"]);
    expect(same.code, same.stderr).toBe(2);
    expect(JSON.parse(same.stderr.trim()).error).toMatchObject({
      code: "INVALID_CONFIG",
      message:
        '--changes-topic "wasmcloud.policy": the same subject as --policy-topic; hosts would take overrides for requests and workers refuse it',
    });
    const custom = await runArbiter([
      "nats",
      "config",
      dir,
      "--policy-topic",
      "p.q",
      "--changes-topic",
      "p.q",
    ]);
    expect(custom.code, custom.stderr).toBe(2);
    expect(() => readdirSync(dir)).toThrow();
  });
});
