import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createSigner, generateKey, signComponent } from "@arbiter/trust";
import { afterAll, describe, expect, it } from "vitest";
import { runArbiter } from "./support/cli.js";

// `arbiter trust sign-component` and `arbiter trust inspect`, run as an operator would.

/** `(module (func (export "f") (result i32) i32.const 42))`. */
const MODULE = Uint8Array.from([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, 0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7f, 0x03, 0x02, 0x01,
  0x00, 0x07, 0x05, 0x01, 0x01, 0x66, 0x00, 0x00, 0x0a, 0x06, 0x01, 0x04, 0x00, 0x41, 0x2a, 0x0b,
]);

const dir = mkdtempSync(join(tmpdir(), "arbiter-components-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

interface Inspected {
  valid: boolean;
  reasons: { code: string; message: string }[];
  claims: {
    name: string | null;
    subject: string;
    issuer: string;
    tags: string[];
    expiresAt: string | null;
  } | null;
}

async function inspect(
  file: string,
  ...extra: string[]
): Promise<{ code: number | null; result: Inspected }> {
  const run = await runArbiter(["trust", "inspect", file, "--json", ...extra]);
  return { code: run.code, result: JSON.parse(run.stdout) as Inspected };
}

describe("arbiter trust sign-component and inspect", () => {
  const account = generateKey("A");
  const unsigned = join(dir, "hello.wasm");
  writeFileSync(unsigned, MODULE);

  it("signs a module with an account key and inspects it as valid, printing its claims", async () => {
    const out = join(dir, "hello.signed.wasm");
    const signed = await runArbiter(
      [
        "trust",
        "sign-component",
        unsigned,
        "--name",
        "hello",
        "--tag",
        "peers",
        "--expires-in-days",
        "1",
        "--json",
      ],
      { ARBITER_ISSUER_SEED: account.seed },
    );
    expect(signed.code, signed.stderr).toBe(0);
    const made = JSON.parse(signed.stdout) as {
      out: string;
      subject: string;
      issuer: string;
      subjectSeed: string;
    };
    expect(made).toMatchObject({ out, issuer: account.publicKey });
    expect(made.subject).toMatch(/^M[A-Z2-7]{55}$/);
    expect(made.subjectSeed).toMatch(/^SM/);

    const { code, result } = await inspect(out);
    expect(code).toBe(0);
    expect(result).toMatchObject({
      valid: true,
      reasons: [],
      claims: { name: "hello", subject: made.subject, issuer: account.publicKey, tags: ["peers"] },
    });
    expect(result.claims?.expiresAt).not.toBeNull();

    const human = await runArbiter(["trust", "inspect", out]);
    expect(human.code).toBe(0);
    expect(human.stdout).toContain("valid");
    expect(human.stdout).toContain(made.subject);

    expect(
      (await inspect(out, "--issuers", generateKey("A").publicKey)).result.reasons.map((r) => r.code),
    ).toEqual(["unknown-issuer"]);
  });

  it("keeps the component's identity with --subject-seed", async () => {
    const componentKey = generateKey("M");
    const out = join(dir, "same.wasm");
    const signed = await runArbiter([
      "trust",
      "sign-component",
      unsigned,
      "--issuer-seed",
      account.seed,
      "--subject-seed",
      componentKey.seed,
      "--out",
      out,
      "--json",
    ]);
    expect(signed.code, signed.stderr).toBe(0);
    expect(JSON.parse(signed.stdout)).not.toHaveProperty("subjectSeed");
    expect((await inspect(out)).result.claims?.subject).toBe(componentKey.publicKey);
  });

  it("exits 1 for a tampered, an unsigned and a truncated module, naming the reason", async () => {
    const out = join(dir, "tamper.wasm");
    await runArbiter(["trust", "sign-component", unsigned, "--issuer-seed", account.seed, "--out", out]);
    const tampered = Uint8Array.from(readFileSync(out));
    tampered[MODULE.length - 2] = 0x2b;
    writeFileSync(out, tampered);
    const bad = await inspect(out);
    expect(bad.code).toBe(1);
    expect(bad.result.valid).toBe(false);
    expect(bad.result.reasons.map((r) => r.code)).toEqual(["hash-mismatch"]);

    const plain = await inspect(unsigned);
    expect(plain.code).toBe(1);
    expect(plain.result.reasons.map((r) => r.code)).toEqual(["unsigned"]);

    const short = join(dir, "short.wasm");
    writeFileSync(short, tampered.subarray(0, 20));
    const truncated = await inspect(short);
    expect(truncated.code).toBe(1);
    expect(truncated.result.reasons[0]).toMatchObject({ code: "malformed-module" });
    expect(truncated.result.reasons[0]?.message).toMatch(/truncated/);
  });

  it("inspects claims whose times lie past the last date JavaScript can hold, as serde's u64 allows", async () => {
    const far = 2 ** 53 - 1;
    const file = join(dir, "far.wasm");
    const issuer = createSigner(account.seed, "A");
    const subject = generateKey("M").publicKey;
    writeFileSync(
      file,
      signComponent(MODULE, { subject, issuedAt: far, expiresAt: far, notBefore: far }, issuer).bytes,
    );
    const json = await inspect(file);
    expect(json.code).toBe(1);
    expect(json.result.reasons.map((r) => r.code)).toEqual(["not-yet-valid"]);
    expect(json.result.claims?.expiresAt).toBe(`${far} s after the epoch`);
    const text = await runArbiter(["trust", "inspect", file]);
    expect(text.code, text.stderr).toBe(1);
    expect(text.stdout).toContain(`issued:    ${far} s after the epoch`);
  });

  it("stops reading an input that never ends, saying how much it reads at most", async () => {
    const run = await runArbiter(["trust", "inspect", "/dev/zero"]);
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/\/dev\/zero: more than 268435456 bytes/);
  });

  it("refuses to sign with a key that is not an account key, or without one", async () => {
    const operator = generateKey("O");
    const wrong = await runArbiter([
      "trust",
      "sign-component",
      unsigned,
      "--issuer-seed",
      operator.seed,
      "--json",
    ]);
    expect(wrong.code).toBe(2);
    expect(JSON.parse(wrong.stderr).error).toMatchObject({ code: "INVALID_KEY" });
    expect(JSON.parse(wrong.stderr).error.message).toMatch(/expected A/);

    const none = await runArbiter(["trust", "sign-component", unsigned, "--json"], {
      ARBITER_ISSUER_SEED: "",
    });
    expect(none.code).toBe(2);
    expect(JSON.parse(none.stderr).error.message).toMatch(/--issuer-seed/);

    const notWasm = join(dir, "script.wasm");
    writeFileSync(notWasm, "#!/bin/sh\n");
    const refused = await runArbiter([
      "trust",
      "sign-component",
      notWasm,
      "--issuer-seed",
      account.seed,
      "--json",
    ]);
    expect(refused.code).toBe(2);
    expect(JSON.parse(refused.stderr).error).toMatchObject({ code: "INVALID_WASM" });
  });

  it("has --help for both commands and generates account keys", async () => {
    for (const command of ["inspect", "sign-component"]) {
      const help = await runArbiter(["trust", command, "--help"]);
      expect(help.code).toBe(0);
      expect(help.stdout).toContain("--json");
    }
    const key = await runArbiter(["trust", "keygen", "account", "--json"]);
    expect(key.code).toBe(0);
    expect(JSON.parse(key.stdout).publicKey).toMatch(/^A/);
  });
});
