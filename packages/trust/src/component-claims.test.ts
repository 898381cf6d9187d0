import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { inspectComponent, moduleHash, policyRequestClaims, signComponent } from "./component-claims.js";
import { createSigner, generateKey } from "./signing.js";

// The independent side of these tests is written from the DESIGN facts alone, not with the code
// under test: a module is sections of id + LEB128 length + content after an 8-byte preamble; the
// hash is SHA-256 (upper-case hex) over the preamble and every section except custom sections named
// `wasmcloud_jwt` or `jwt`, each written with a minimal length; the JWT is
// base64url(header).base64url(claims).base64url(Ed25519 signature).

const PREAMBLE = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];
/** `(module (func (export "f") (result i32) i32.const 42))`. */
const MODULE = Uint8Array.from([
  ...PREAMBLE,
  ...[0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7f],
  ...[0x03, 0x02, 0x01, 0x00],
  ...[0x07, 0x05, 0x01, 0x01, 0x66, 0x00, 0x00],
  ...[0x0a, 0x06, 0x01, 0x04, 0x00, 0x41, 0x2a, 0x0b],
]);
/** Where the module's `i32.const 42` immediate is. */
const CONST_OFFSET = MODULE.length - 2;

function leb(value: number): number[] {
  const out: number[] = [];
  let rest = value;
  do {
    out.push((rest & 0x7f) | (rest >= 0x80 ? 0x80 : 0));
    rest >>>= 7;
  } while (rest > 0);
  return out;
}

/** The reference hash: walks top-level sections, skips claims sections, re-writes lengths minimally. */
function referenceHash(bytes: Uint8Array): string {
  const out: number[] = [...bytes.subarray(0, 8)];
  let at = 8;
  while (at < bytes.length) {
    const id = bytes[at++] ?? 0;
    let length = 0;
    let shift = 0;
    let byte: number;
    do {
      byte = bytes[at++] ?? 0;
      length += (byte & 0x7f) * 2 ** shift;
      shift += 7;
    } while (byte & 0x80);
    const content = bytes.subarray(at, at + length);
    at += length;
    if (id === 0) {
      const nameLength = content[0] ?? 0;
      const name = Buffer.from(content.subarray(1, 1 + nameLength)).toString("utf8");
      if (name === "wasmcloud_jwt" || name === "jwt") continue;
    }
    out.push(id, ...leb(length), ...content);
  }
  return createHash("sha256").update(Uint8Array.from(out)).digest("hex").toUpperCase();
}

function customSection(name: string, data: Uint8Array): number[] {
  const content = [...leb(name.length), ...Buffer.from(name), ...data];
  return [0, ...leb(content.length), ...content];
}

/** Signs `claims` with `seed` by hand and embeds them in `bytes` under `section`. */
function referenceSign(
  bytes: Uint8Array,
  claims: object,
  seed: string,
  section = "wasmcloud_jwt",
  header: object = { typ: "jwt", alg: "Ed25519" },
): Uint8Array {
  const b64 = (value: object) => Buffer.from(JSON.stringify(value)).toString("base64url");
  const signingInput = `${b64(header)}.${b64(claims)}`;
  const token = `${signingInput}.${createSigner(seed).sign(signingInput)}`;
  return Uint8Array.from([...bytes, ...customSection(section, Buffer.from(token))]);
}

const account = generateKey("A");
const component = generateKey("M");
const issuer = createSigner(account.seed);
const NOW = 1_800_000_000;

function claimsFor(bytes: Uint8Array, overrides: Record<string, unknown> = {}) {
  return {
    jti: "reference",
    iat: NOW - 60,
    iss: account.publicKey,
    sub: component.publicKey,
    wascap: { name: "reference", hash: referenceHash(bytes), tags: [], prov: false },
    wascap_revision: 3,
    ...overrides,
  };
}

function codes(bytes: Uint8Array, options: { issuers?: string[] } = {}): string[] {
  return inspectComponent(bytes, { nowSeconds: NOW, ...options }).reasons.map((r) => r.code);
}

describe("module hash", () => {
  it("agrees with the reference implementation, for unsigned and signed modules", () => {
    expect(moduleHash(MODULE)).toBe(referenceHash(MODULE));
    const signed = signComponent(MODULE, { subject: component.publicKey }, issuer).bytes;
    expect(moduleHash(signed)).toBe(referenceHash(MODULE));
    expect(referenceHash(signed)).toBe(referenceHash(MODULE));
  });
});

describe("against wascap 0.16.2 (test/data/wascap-0.16.2)", () => {
  const data = (name: string) =>
    new Uint8Array(readFileSync(new URL(`../../../test/data/wascap-0.16.2/${name}`, import.meta.url)));
  const input = data("component.wasm");
  const byWascap = data("signed-by-wascap.wasm");
  /** A binary less its last section (the claims section both signers append). */
  const withoutLastSection = (bytes: Uint8Array) => {
    let at = 8;
    let last = 8;
    while (at < bytes.length) {
      last = at;
      let length = 0;
      let shift = 0;
      let i = at + 1;
      let byte: number;
      do {
        byte = bytes[i++] ?? 0;
        length += (byte & 0x7f) * 2 ** shift;
        shift += 7;
      } while (byte & 0x80);
      at = i + length;
    }
    return bytes.subarray(0, last);
  };

  it("accepts a component wascap signed, with the hash wascap computed", () => {
    const inspection = inspectComponent(byWascap);
    expect(inspection).toMatchObject({ valid: true, encoding: "component", section: "wasmcloud_jwt" });
    expect(inspection.claims).toMatchObject({
      wascap: { name: "wascap-fixture", tags: ["fixture"], rev: 1, ver: "0.1.0", prov: false },
      wascap_revision: 3,
    });
    expect(inspection.claims?.wascap.hash).toBe(moduleHash(input));
  });

  it("signs the same bytes as wascap, up to the claims section", () => {
    const signed = signComponent(input, { subject: component.publicKey }, issuer).bytes;
    expect(Buffer.from(withoutLastSection(signed)).equals(Buffer.from(withoutLastSection(byWascap)))).toBe(
      true,
    );
    expect(
      Buffer.from(withoutLastSection(data("signed-by-arbiter.wasm"))).equals(
        Buffer.from(withoutLastSection(byWascap)),
      ),
    ).toBe(true);
    expect(inspectComponent(data("signed-by-arbiter.wasm")).valid).toBe(true);
  });

  it("refuses wascap's component with one byte changed", () => {
    const tampered = Uint8Array.from(byWascap);
    const at = Buffer.from(tampered).indexOf(Buffer.from([0x41, 0x2a, 0x0b]));
    tampered[at + 1] = 0x2b;
    expect(codes(tampered)).toEqual(["hash-mismatch"]);
  });
});

describe("signComponent and inspectComponent", () => {
  it("accepts a module it signed, and the reference implementation agrees on hash and signature", () => {
    const signed = signComponent(
      MODULE,
      {
        subject: component.publicKey,
        name: "hello",
        tags: ["peers"],
        rev: 2,
        ver: "0.1.0",
        issuedAt: NOW - 10,
      },
      issuer,
    );
    const inspection = inspectComponent(signed.bytes, { nowSeconds: NOW });
    expect(inspection).toMatchObject({
      valid: true,
      reasons: [],
      section: "wasmcloud_jwt",
      encoding: "module",
    });
    expect(inspection.claims).toMatchObject({
      iss: account.publicKey,
      sub: component.publicKey,
      iat: NOW - 10,
      wascap: {
        name: "hello",
        hash: referenceHash(MODULE),
        tags: ["peers"],
        rev: 2,
        ver: "0.1.0",
        prov: false,
      },
      wascap_revision: 3,
    });
    // The token is the section's data, with the header wascap writes, verifiable without our codec.
    const [header, , signature] = signed.token.split(".");
    expect(JSON.parse(Buffer.from(header ?? "", "base64url").toString())).toEqual({
      typ: "jwt",
      alg: "Ed25519",
    });
    expect(Buffer.from(signature ?? "", "base64url")).toHaveLength(64);
    expect(Buffer.from(signed.bytes).includes(Buffer.from(signed.token))).toBe(true);
  });

  it("accepts a module signed by the reference implementation", () => {
    expect(codes(referenceSign(MODULE, claimsFor(MODULE), account.seed))).toEqual([]);
  });

  it("accepts claims in the older `jwt` section and says which section held them", () => {
    const signed = referenceSign(MODULE, claimsFor(MODULE), account.seed, "jwt");
    const inspection = inspectComponent(signed, { nowSeconds: NOW });
    expect(inspection.valid).toBe(true);
    expect(inspection.section).toBe("jwt");
  });

  it("refuses a module with one byte changed after signing: hash mismatch", () => {
    const signed = signComponent(MODULE, { subject: component.publicKey }, issuer).bytes;
    const tampered = Uint8Array.from(signed);
    tampered[CONST_OFFSET] = 0x2b;
    expect(codes(tampered)).toEqual(["hash-mismatch"]);
  });

  it("still accepts a signed module whose section length is rewritten as a longer LEB128 of the same value", () => {
    // wascap hashes the module re-encoded with minimal lengths, so how a length is written is not
    // part of what is signed: the module means the same, and the host accepts it too.
    const signed = signComponent(MODULE, { subject: component.publicKey }, issuer).bytes;
    const padded = Uint8Array.from([
      ...signed.subarray(0, 9),
      0x85,
      0x80,
      0x80,
      0x80,
      0x00,
      ...signed.subarray(10),
    ]);
    expect(padded).toHaveLength(signed.length + 4);
    expect(codes(padded)).toEqual([]);
    expect(moduleHash(padded)).toBe(referenceHash(MODULE));
  });

  it("refuses a longer LEB128 inside a section's content, which the hash covers byte for byte", () => {
    const named = Uint8Array.from([...MODULE, ...customSection("note", Uint8Array.of(1))]);
    const signed = signComponent(named, { subject: component.publicKey }, issuer).bytes;
    // The custom section's name length (inside its content) 0x04 becomes 0x84 0x00.
    const at = MODULE.length + 2;
    expect(signed[at]).toBe(4);
    const padded = Uint8Array.from([
      ...signed.subarray(0, MODULE.length + 1),
      (signed[MODULE.length + 1] ?? 0) + 1,
      0x84,
      0x00,
      ...signed.subarray(at + 1),
    ]);
    expect(codes(padded)).toEqual(["hash-mismatch"]);
  });

  it("refuses an issuer that is not an account key, even with a good signature", () => {
    const operator = generateKey("O");
    const signed = referenceSign(MODULE, claimsFor(MODULE, { iss: operator.publicKey }), operator.seed);
    expect(codes(signed)).toEqual(["issuer-not-account"]);
    expect(() =>
      signComponent(MODULE, { subject: component.publicKey }, createSigner(operator.seed)),
    ).toThrow(/account \(A…\) key/);
  });

  it("refuses a subject that is not a component key", () => {
    const host = generateKey("N");
    expect(codes(referenceSign(MODULE, claimsFor(MODULE, { sub: host.publicKey }), account.seed))).toEqual([
      "subject-not-component",
    ]);
    expect(() => signComponent(MODULE, { subject: host.publicKey }, issuer)).toThrow(/expected M/);
  });

  it("refuses claims signed by another key than their issuer", () => {
    const other = generateKey("A");
    expect(codes(referenceSign(MODULE, claimsFor(MODULE), other.seed))).toEqual(["bad-signature"]);
  });

  it("refuses an issuer outside the accepted list when one is given", () => {
    const signed = referenceSign(MODULE, claimsFor(MODULE), account.seed);
    expect(codes(signed, { issuers: [generateKey("A").publicKey] })).toEqual(["unknown-issuer"]);
    expect(codes(signed, { issuers: [account.publicKey] })).toEqual([]);
  });

  it("refuses expired and not-yet-valid claims", () => {
    expect(codes(referenceSign(MODULE, claimsFor(MODULE, { exp: NOW - 1 }), account.seed))).toEqual([
      "expired",
    ]);
    expect(codes(referenceSign(MODULE, claimsFor(MODULE, { nbf: NOW + 60 }), account.seed))).toEqual([
      "not-yet-valid",
    ]);
    expect(
      codes(referenceSign(MODULE, claimsFor(MODULE, { exp: NOW + 60, nbf: NOW - 60 }), account.seed)),
    ).toEqual([]);
  });

  it("never throws for times past the last date JavaScript can hold, which serde's u64 allows", () => {
    const far = 2 ** 53 - 1;
    const bytes = referenceSign(MODULE, claimsFor(MODULE, { iat: far, exp: far, nbf: far }), account.seed);
    const found = inspectComponent(bytes, { nowSeconds: NOW });
    expect(found.reasons.map((r) => r.code)).toEqual(["not-yet-valid"]);
    expect(found.reasons[0]?.message).toContain(`${far} s after the epoch`);
    const expired = referenceSign(MODULE, claimsFor(MODULE, { exp: 0 }), account.seed);
    expect(inspectComponent(expired, { nowSeconds: far }).reasons.map((r) => r.code)).toEqual(["expired"]);
  });

  it("refuses claims from before revision 3, whose hash the host does not check", () => {
    const tampered = Uint8Array.from(MODULE);
    tampered[CONST_OFFSET] = 0x2b;
    const legacy = referenceSign(tampered, claimsFor(MODULE, { wascap_revision: 2 }), account.seed);
    expect(codes(legacy)).toEqual(["unsupported-revision"]);
  });

  it("refuses a wrong algorithm or header type, malformed tokens and claims that are not component claims", () => {
    expect(
      codes(
        referenceSign(MODULE, claimsFor(MODULE), account.seed, "wasmcloud_jwt", { typ: "jwt", alg: "HS256" }),
      ),
    ).toEqual(["wrong-algorithm"]);
    expect(
      codes(
        referenceSign(MODULE, claimsFor(MODULE), account.seed, "wasmcloud_jwt", {
          typ: "JWT",
          alg: "Ed25519",
        }),
      ),
    ).toEqual(["invalid-header"]);
    expect(
      codes(Uint8Array.from([...MODULE, ...customSection("wasmcloud_jwt", Buffer.from("not.a-token"))])),
    ).toEqual(["malformed-token"]);
    const { wascap: _dropped, ...noMetadata } = claimsFor(MODULE);
    expect(codes(referenceSign(MODULE, noMetadata, account.seed))).toEqual(["invalid-claims"]);
    const inspection = inspectComponent(
      referenceSign(MODULE, claimsFor(MODULE, { iat: "yesterday" }), account.seed),
    );
    expect(inspection.reasons[0]?.message).toMatch(/iat/);
  });

  it("reports an unsigned module, a second claims section and bytes that are not a module", () => {
    expect(codes(MODULE)).toEqual(["unsigned"]);
    const signed = referenceSign(MODULE, claimsFor(MODULE), account.seed);
    expect(codes(referenceSign(signed, claimsFor(MODULE), account.seed, "jwt"))).toEqual([
      "multiple-claims-sections",
    ]);
    const truncated = inspectComponent(signed.subarray(0, signed.length - 10));
    expect(truncated.reasons.map((r) => r.code)).toEqual(["malformed-module"]);
    expect(truncated.reasons[0]?.message).toMatch(/truncated/);
    expect(truncated.encoding).toBeNull();
  });

  it("refuses claims that repeat a key, which wascap's serde refuses: no hash that one reader sees and another does not", () => {
    const claims = JSON.stringify(claimsFor(MODULE)).replace(
      '"hash":"',
      `"hash":"${"0".repeat(64)}","hash":"`,
    );
    const b64 = (text: string) => Buffer.from(text).toString("base64url");
    const signingInput = `${b64('{"typ":"jwt","alg":"Ed25519"}')}.${b64(claims)}`;
    const token = `${signingInput}.${issuer.sign(signingInput)}`;
    const bytes = Uint8Array.from([...MODULE, ...customSection("wasmcloud_jwt", Buffer.from(token))]);
    const found = inspectComponent(bytes, { nowSeconds: NOW });
    expect(found.reasons.map((r) => r.code)).toEqual(["malformed-token"]);
    expect(found.reasons[0]?.message).toContain('repeat the key "hash"');
  });

  it.each([
    [
      "a section length of five LEB128 bytes above 2^32",
      [0x01, 0xff, 0xff, 0xff, 0xff, 0x1f],
      /does not fit in 32 bits/,
    ],
    [
      "a section length of six LEB128 bytes",
      [0x01, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00],
      /longer than 5 bytes/,
    ],
    ["a section length past the end", [0x01, 0xff, 0xff, 0xff, 0xff, 0x0f], /truncated/],
    ["an empty custom section", [0x00, 0x00], /truncated/],
    ["a custom section name past its section", [0x00, 0x02, 0x05, 0x6a], /name runs past/],
    ["a custom section name that is not UTF-8", [0x00, 0x03, 0x02, 0xc3, 0x28], /not UTF-8/],
    ["a section id with its high bit set", [0x80, 0x00], /malformed section id/],
  ])("refuses %s as a malformed module, never throwing", (_name, tail, message) => {
    const found = inspectComponent(Uint8Array.from([...PREAMBLE, ...tail]), { nowSeconds: NOW });
    expect(found.reasons.map((r) => r.code)).toEqual(["malformed-module"]);
    expect(found.reasons[0]?.message).toMatch(message);
  });

  it("never throws on mutations of a signed module, and accepts none that changes its bytes", () => {
    const signed = referenceSign(MODULE, claimsFor(MODULE), account.seed);
    let seed = 11;
    const random = (n: number) => {
      seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
      return seed % n;
    };
    for (let i = 0; i < 3000; i++) {
      const bytes = Uint8Array.from(signed);
      for (let k = 0; k <= random(4); k++) bytes[random(bytes.length)] = random(256);
      const found = inspectComponent(bytes, { nowSeconds: NOW });
      if (found.valid) expect(Buffer.from(bytes).equals(Buffer.from(signed))).toBe(true);
    }
  });

  it("refuses components nested thousands deep without exhausting the stack", () => {
    const COMPONENT = [0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00];
    // Built from the inside out: each level is a preamble, a section id and the inner length.
    const prefixes: number[][] = [];
    let length = MODULE.length;
    for (let depth = 0; depth < 2000; depth++) {
      const prefix = [...COMPONENT, depth === 0 ? 1 : 4, ...leb(length)];
      prefixes.push(prefix);
      length += prefix.length;
    }
    const inner = Buffer.concat([...prefixes.reverse().map((p) => Uint8Array.from(p)), MODULE]);
    const found = inspectComponent(inner, { nowSeconds: NOW });
    expect(found.reasons.map((r) => r.code)).toEqual(["malformed-module"]);
    expect(found.reasons[0]?.message).toMatch(/nested deeper than 64/);
  });

  it("reads claims in a nested module's jwt section, where the host finds them, and counts them with the top level's", () => {
    const componentHeader = [0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00];
    const nested = (inner: Uint8Array) => [0x01, ...leb(inner.length), ...inner];
    const plain = Uint8Array.from([...componentHeader, ...nested(MODULE)]);
    const hash = moduleHash(plain);
    const token = (seed: string) => {
      const b64 = (value: object) => Buffer.from(JSON.stringify(value)).toString("base64url");
      const input = `${b64({ typ: "jwt", alg: "Ed25519" })}.${b64({ ...claimsFor(MODULE), wascap: { hash } })}`;
      return Buffer.from(`${input}.${createSigner(seed).sign(input)}`);
    };
    const inNested = Uint8Array.from([
      ...componentHeader,
      ...nested(Uint8Array.from([...MODULE, ...customSection("jwt", token(account.seed))])),
    ]);
    expect(inspectComponent(inNested, { nowSeconds: NOW })).toMatchObject({ valid: true, section: "jwt" });
    // A nested wasmcloud_jwt section is not read by the host: the component counts as unsigned.
    const ignored = Uint8Array.from([
      ...componentHeader,
      ...nested(Uint8Array.from([...MODULE, ...customSection("wasmcloud_jwt", token(account.seed))])),
    ]);
    expect(codes(ignored)).toEqual(["unsigned"]);
    const both = Uint8Array.from([...inNested, ...customSection("wasmcloud_jwt", token(account.seed))]);
    expect(codes(both)).toEqual(["multiple-claims-sections"]);
  });

  it("re-signing replaces the old claims section instead of adding one", () => {
    const once = signComponent(MODULE, { subject: component.publicKey, name: "first" }, issuer).bytes;
    const twice = signComponent(once, { subject: component.publicKey, name: "second" }, issuer).bytes;
    const inspection = inspectComponent(twice);
    expect(inspection.valid).toBe(true);
    expect(inspection.claims?.wascap.name).toBe("second");
  });

  it("maps claims to what a 1.x host puts in its policy request", () => {
    const signed = signComponent(
      MODULE,
      { subject: component.publicKey, issuedAt: NOW, expiresAt: NOW + 5 },
      issuer,
    );
    expect(policyRequestClaims(signed.claims, NOW)).toEqual({
      publicKey: component.publicKey,
      issuer: account.publicKey,
      issuedAt: String(NOW),
      expiresAt: NOW + 5,
      expired: false,
    });
    expect(policyRequestClaims(signed.claims, NOW + 6).expired).toBe(true);
  });
});
