import { createOperator, createServer, fromPublic, fromSeed } from "@nats-io/nkeys";
import { describe, expect, it } from "vitest";
import { decodePublicKey, decodeSeed, encodePublicKey, isInvalidKeyError } from "./nkey-codec.js";
import { signJson, splitSignedJson, verifySignedJson } from "./signed-json.js";
import { createSigner, generateKey, verifySignature } from "./signing.js";

// Keys taken from real wasmCloud requests (test/data/wasmcloud-v1).
const REAL_KEYS = {
  M: "MBFFVNGFK3IA2ZXXG5DQXQNYM6TNG45PHJMJIJFVFI6YKS3XTXL3DRRK",
  V: "VAG3QITQQ2ODAOWB5TTQSDJ53XK3SHBEIFNK4AYJ5RKAX2UNSCAPHA5M",
  A: "ACOJJN6WUP4ODD75XEBKKTCCUJJCY5ZKQ56XVKYK4BEJWGVAOOQHZMCW",
  N: "NBLSJGGOETB677FQL63PWKDCVMOW4LXVI7S6WXSP55H7L5RNRKUDZKGE",
} as const;

describe("nkey codec", () => {
  it("round-trips the real component, provider, account and host keys", () => {
    for (const [role, key] of Object.entries(REAL_KEYS)) {
      const decoded = decodePublicKey(key);
      expect(decoded.role).toBe(role);
      expect(encodePublicKey(decoded.role, decoded.raw)).toBe(key);
    }
  });

  it("agrees with nkeys.js on the roles nkeys.js knows", () => {
    const pair = createOperator();
    const seed = new TextDecoder().decode(pair.getSeed());
    const { role, raw } = decodeSeed(seed, "O");
    expect(role).toBe("O");
    expect(raw.length).toBe(32);
    expect(createSigner(seed).publicKey).toBe(pair.getPublicKey());
    expect(fromPublic(pair.getPublicKey()).getPublicKey()).toBe(
      encodePublicKey("O", decodePublicKey(pair.getPublicKey()).raw),
    );
  });

  it("rejects a flipped character, an unknown alphabet and the wrong role", () => {
    const flipped = `${REAL_KEYS.M.slice(0, 10)}${REAL_KEYS.M[10] === "A" ? "B" : "A"}${REAL_KEYS.M.slice(11)}`;
    expect(() => decodePublicKey(flipped)).toThrow(/checksum/);
    expect(() => decodePublicKey(`${REAL_KEYS.M.slice(0, 55)}0`)).toThrow(/base32/);
    try {
      decodePublicKey(REAL_KEYS.V, "M");
      expect.unreachable();
    } catch (err) {
      expect(isInvalidKeyError(err)).toBe(true);
      expect(String(err)).toMatch(/is a V key; expected M/);
    }
  });

  it("refuses a public key or seed with a character too many or too few", () => {
    for (const key of [
      `${REAL_KEYS.M}A`,
      `${REAL_KEYS.M}Q`,
      REAL_KEYS.M.slice(0, 55),
      `${REAL_KEYS.N}AAAA`,
    ]) {
      expect(() => decodePublicKey(key)).toThrow(
        new RegExp(`its length is ${key.length}, a public nkey has 56 characters`),
      );
    }
    const { seed } = generateKey("O");
    for (const text of [`${seed}A`, seed.slice(0, 57), `${seed}AA`]) {
      expect(() => decodeSeed(text)).toThrow(
        new RegExp(`its length is ${text.length}, a seed has 58 characters`),
      );
    }
  });

  it("refuses a seed whose last character carries stray bits, without showing the seed", () => {
    const { seed } = generateKey("O");
    const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    const last = alphabet.indexOf(seed.at(-1)!);
    // 58 characters carry 290 bits for 288: the last character's low 2 bits are padding.
    for (const pad of [1, 2, 3]) {
      const stray = `${seed.slice(0, 57)}${alphabet[last ^ pad]}`;
      expect(() => decodeSeed(stray)).toThrow(
        /the seed is not canonical base32: its last character has stray bits/,
      );
    }
    try {
      decodeSeed(`${seed.slice(0, 57)}${alphabet[last ^ 1]}`);
    } catch (err) {
      expect(String(err)).not.toContain(seed.slice(0, 8));
    }
  });

  it("names the wrong role with the article its letter takes", () => {
    expect(() => decodePublicKey(REAL_KEYS.A, "M")).toThrow(/is an A key; expected M/);
    expect(() => decodePublicKey(REAL_KEYS.N, "O")).toThrow(/is an N key; expected O/);
    expect(() => decodePublicKey(REAL_KEYS.M, "V")).toThrow(/is an M key; expected V/);
    expect(() => decodePublicKey(createOperator().getPublicKey(), "N")).toThrow(/is an O key; expected N/);
    expect(() => decodePublicKey(generateKey("C").publicKey, "N")).toThrow(/is a C key; expected N/);
    expect(() => decodePublicKey(generateKey("U").publicKey, "N")).toThrow(/is a U key; expected N/);
    expect(() => decodeSeed(generateKey("N").seed, "O")).toThrow(/^.*the seed is an N key; expected O$/);
  });
});

describe("signatures", () => {
  it("node:crypto signatures verify with nkeys.js and the other way round", () => {
    const pair = createServer();
    const signer = createSigner(new TextDecoder().decode(pair.getSeed()));
    const data = new TextEncoder().encode("policy decision");
    const sig = signer.sign(data);
    expect(pair.verify(data, Buffer.from(sig, "base64url"))).toBe(true);
    const nkeysSig = Buffer.from(pair.sign(data)).toString("base64url");
    expect(nkeysSig).toBe(sig);
    expect(verifySignature(signer.publicKey, data, nkeysSig)).toBe(true);
  });

  it("generates wasmCloud component and provider keys nkeys.js cannot make", () => {
    for (const role of ["M", "V", "O", "C", "N"] as const) {
      const key = generateKey(role);
      expect(key.publicKey.startsWith(role)).toBe(true);
      expect(key.seed.startsWith(`S${role}`)).toBe(true);
      const signer = createSigner(key.seed, role);
      expect(signer.publicKey).toBe(key.publicKey);
      expect(verifySignature(key.publicKey, "x", signer.sign("x"))).toBe(true);
    }
    expect(() => fromSeed(new TextEncoder().encode(generateKey("M").seed))).toThrow();
  });

  it("never throws on garbage keys or signatures", () => {
    expect(verifySignature("not-a-key", "x", "AAAA")).toBe(false);
    expect(verifySignature(REAL_KEYS.N, "x", "%%%")).toBe(false);
    expect(verifySignature(REAL_KEYS.N, "x", "A".repeat(86))).toBe(false);
  });
});

describe("signed JSON", () => {
  const admin = createSigner(generateKey("O").seed);

  it("appends a signature that covers the record text", () => {
    const text = signJson({ a: 1, nested: { signature: "inner" } }, admin);
    expect(JSON.parse(text)).toMatchObject({ a: 1, nested: { signature: "inner" } });
    expect(verifySignedJson(text, admin.publicKey)).toBe(true);
    expect(splitSignedJson(text)?.body).toBe(JSON.stringify({ a: 1, nested: { signature: "inner" } }));
  });

  it("fails on any change, another key, or a missing signature", () => {
    const text = signJson({ permitted: false }, admin);
    expect(verifySignedJson(text.replace("false", "true"), admin.publicKey)).toBe(false);
    expect(verifySignedJson(text, createSigner(generateKey("O").seed).publicKey)).toBe(false);
    expect(verifySignedJson('{"permitted":true}', admin.publicKey)).toBe(false);
  });
});
