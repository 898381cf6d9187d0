import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  createSigner,
  encodeInvocationMsgpack,
  generateKey,
  type InvocationV1,
  invocationToJson,
  signInvocation,
  type WasmcloudEntity,
} from "@arbiter/trust";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runArbiter } from "./support/cli.js";

const origin: WasmcloudEntity = {
  public_key: "MBFFVNGFK3IA2ZXXG5DQXQNYM6TNG45PHJMJIJFVFI6YKS3XTXL3DRRK",
  link_name: "",
  contract_id: "",
};
const target: WasmcloudEntity = {
  public_key: "VAG3QITQQ2ODAOWB5TTQSDJ53XK3SHBEIFNK4AYJ5RKAX2UNSCAPHA5M",
  link_name: "default",
  contract_id: "wasmcloud:keyvalue",
};

describe("arbiter trust verify-invocation and keygen cluster", () => {
  const cluster = createSigner(generateKey("C").seed, "C");
  const hostId = generateKey("N").publicKey;
  let dir: string;
  let signed: InvocationV1;
  const noIssuers = { WASMCLOUD_CLUSTER_ISSUERS: "" };

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "arbiter-invocation-"));
    signed = signInvocation(
      { origin, target, operation: "KeyValue.Get", msg: Buffer.from("counter"), hostId },
      cluster,
    );
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("verifies a signed invocation read as JSON from standard input", async () => {
    const result = await runArbiter(
      ["trust", "verify-invocation", "-", "--issuers", cluster.publicKey, "--json"],
      noIssuers,
      JSON.stringify(invocationToJson(signed)),
    );
    expect(result.stderr).toBe("");
    expect(result.code).toBe(0);
    expect(JSON.parse(result.stdout)).toEqual({ valid: true, reasons: [] });
  });

  it("reads msgpack bytes from a file and takes the issuers from WASMCLOUD_CLUSTER_ISSUERS", async () => {
    const file = join(dir, "signed.msgpack");
    writeFileSync(file, encodeInvocationMsgpack(signed));
    const other = generateKey("C").publicKey;
    const result = await runArbiter(["trust", "verify-invocation", file], {
      WASMCLOUD_CLUSTER_ISSUERS: `${other},${cluster.publicKey}`,
    });
    expect(result.code).toBe(0);
    expect(result.stdout).toContain(`valid: signed by cluster issuer ${cluster.publicKey}`);
  });

  it("exits 1 for a forged invocation, naming each reason with and without --json", async () => {
    const file = join(dir, "forged.json");
    const forged = { ...signed, msg: Buffer.from("balance"), host_id: origin.public_key };
    writeFileSync(file, JSON.stringify(invocationToJson(forged)));
    const json = await runArbiter(["trust", "verify-invocation", file, "--json"], {
      WASMCLOUD_CLUSTER_ISSUERS: cluster.publicKey,
    });
    expect(json.code).toBe(1);
    const out = JSON.parse(json.stdout) as { valid: boolean; reasons: { code: string; message: string }[] };
    expect(out.valid).toBe(false);
    expect(out.reasons.map((r) => r.code)).toEqual(["host-id-not-host-key", "hash-mismatch"]);
    const human = await runArbiter([
      "trust",
      "verify-invocation",
      file,
      "--issuers",
      generateKey("C").publicKey,
    ]);
    expect(human.code).toBe(1);
    expect(human.stdout).toMatch(
      /^invalid:\n {2}host-id-not-host-key: .+\n {2}unknown-issuer: .+\n {2}hash-mismatch: /,
    );
  });

  it("refuses to verify with no issuers at all, saying where they come from", async () => {
    const result = await runArbiter(["trust", "verify-invocation", "-", "--json"], noIssuers, "{}");
    expect(result.code).toBe(2);
    const error = JSON.parse(result.stderr) as { error: { code: string; message: string } };
    expect(error.error.code).toBe("INVALID_CONFIG");
    expect(error.error.message).toMatch(/--issuers .*WASMCLOUD_CLUSTER_ISSUERS/);
    const notCluster = await runArbiter(["trust", "verify-invocation", "-", "--issuers", hostId], {}, "{}");
    expect(notCluster.code).toBe(2);
    expect(notCluster.stderr).toMatch(/--issuers: .* is not a cluster public key/);
  });

  it("says what is wrong with bytes that are not an invocation", async () => {
    const result = await runArbiter(
      ["trust", "verify-invocation", "-", "--issuers", cluster.publicKey, "--json"],
      {},
      '{"origin": 1, "msg": "aGk="}',
    );
    expect(result.code).toBe(2);
    const error = JSON.parse(result.stderr) as { error: { code: string; message: string } };
    expect(error.error.code).toBe("INVALID_INVOCATION");
    expect(error.error.message).toMatch(/standard input: not an invocation: origin/);
  });

  it("stops reading an input that never ends, saying how much it reads at most", async () => {
    const result = await runArbiter([
      "trust",
      "verify-invocation",
      "/dev/zero",
      "--issuers",
      cluster.publicKey,
    ]);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/\/dev\/zero: more than 67108864 bytes/);
  });

  it("keygen cluster prints the seed and key under the wasmCloud variable names", async () => {
    const result = await runArbiter(["trust", "keygen", "cluster", "--json"]);
    const key = JSON.parse(result.stdout) as { publicKey: string; seed: string; env: Record<string, string> };
    expect(key.publicKey).toMatch(/^C/);
    expect(key.seed).toMatch(/^SC/);
    expect(createSigner(key.seed, "C").publicKey).toBe(key.publicKey);
    expect(key.env).toEqual({ WASMCLOUD_CLUSTER_SEED: key.seed, WASMCLOUD_CLUSTER_ISSUERS: key.publicKey });
    const human = await runArbiter(["trust", "keygen", "cluster"]);
    expect(human.stdout).toMatch(/^WASMCLOUD_CLUSTER_SEED=SC[A-Z2-7]+$/m);
    expect(human.stdout).toMatch(/^WASMCLOUD_CLUSTER_ISSUERS=C[A-Z2-7]+$/m);
    const help = await runArbiter(["trust", "verify-invocation", "--help"]);
    expect(help.stdout).toContain("--issuers");
  });
});
