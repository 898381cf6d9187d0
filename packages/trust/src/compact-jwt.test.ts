import { describe, expect, it } from "vitest";
import { decodeJwt, encodeJwt, isDecodedJwt, verifyJwtSignature } from "./compact-jwt.js";
import { createSigner, generateKey } from "./signing.js";

const HEADER = { typ: "jwt", alg: "Ed25519" };

describe("compact JWT", () => {
  const cluster = generateKey("C");
  const signer = createSigner(cluster.seed);

  it("round-trips header and claims and verifies with the signer's key only", () => {
    const token = encodeJwt(HEADER, { iss: cluster.publicKey, sub: "x" }, signer);
    const decoded = decodeJwt(token);
    if (!isDecodedJwt(decoded)) throw new Error(decoded.detail);
    expect(decoded.header).toEqual(HEADER);
    expect(decoded.headerText).toBe('{"typ":"jwt","alg":"Ed25519"}');
    expect(decoded.claims).toEqual({ iss: cluster.publicKey, sub: "x" });
    expect(verifyJwtSignature(decoded, cluster.publicKey)).toBe(true);
    expect(verifyJwtSignature(decoded, generateKey("C").publicKey)).toBe(false);
  });

  it("does not verify once the claims are changed", () => {
    const [h, , s] = encodeJwt(HEADER, { sub: "a" }, signer).split(".");
    const forged = `${h}.${Buffer.from('{"sub":"b"}').toString("base64url")}.${s}`;
    const decoded = decodeJwt(forged);
    if (!isDecodedJwt(decoded)) throw new Error(decoded.detail);
    expect(verifyJwtSignature(decoded, cluster.publicKey)).toBe(false);
  });

  it.each([
    ["", "3 dot-separated parts"],
    ["a.b", "3 dot-separated parts"],
    ["a.b.c.d", "3 dot-separated parts"],
    ["..", "header part is empty"],
    ["a+b.c.d", "header part is not base64url"],
    [`${Buffer.from("[1]").toString("base64url")}.e30.${"A".repeat(86)}`, "header is not a JSON object"],
    [`e30.${Buffer.from("nope").toString("base64url")}.${"A".repeat(86)}`, "claims are not a JSON object"],
    ["e30.e30.AAAA", "signature is not 64 bytes"],
  ])("refuses %j as malformed (%s)", (token, reason) => {
    const decoded = decodeJwt(token);
    expect(isDecodedJwt(decoded)).toBe(false);
    if (!isDecodedJwt(decoded)) expect(decoded.detail).toContain(reason);
  });

  describe("refuses what wascap's decoder (serde_json, canonical base64url) refuses", () => {
    const part = (text: string | Buffer) => Buffer.from(text).toString("base64url");
    const signed = (headerPart: string, claimsPart: string) =>
      `${headerPart}.${claimsPart}.${signer.sign(`${headerPart}.${claimsPart}`)}`;
    const header = part(JSON.stringify(HEADER));

    it.each([
      ["a key given twice", part('{"jti":"a","iat":1,"jti":"b"}'), 'claims repeat the key "jti"'],
      ["a key given twice, once escaped", part('{"jti":"a","\\u006a\\u0074\\u0069":"b"}'), "repeat the key"],
      [
        "a nested key given twice",
        part('{"wascap":{"hash":"A","hash":"B"}}'),
        'claims repeat the key "hash"',
      ],
      [
        "bytes that are not UTF-8",
        part(Buffer.from([0x7b, 0x22, 0x6a, 0xff, 0x22, 0x3a, 0x31, 0x7d])),
        "not UTF-8",
      ],
      ["a lone surrogate", part('{"jti":"\\ud800"}'), "lone surrogate"],
      ["a lone trailing surrogate", part('{"jti":"x\\udc00"}'), "lone surrogate"],
    ])("claims with %s", (_name, claimsPart, reason) => {
      const decoded = decodeJwt(signed(header, claimsPart));
      expect(isDecodedJwt(decoded)).toBe(false);
      if (!isDecodedJwt(decoded)) expect(decoded.detail).toContain(reason);
    });

    it("a header with a key given twice", () => {
      const decoded = decodeJwt(signed(part('{"typ":"jwt","alg":"none","alg":"Ed25519"}'), part("{}")));
      expect(isDecodedJwt(decoded) ? null : decoded.detail).toContain('repeats the key "alg"');
    });

    it("accepts a surrogate pair, escaped or not", () => {
      expect(isDecodedJwt(decodeJwt(signed(header, part('{"a":"\\ud83d\\ude00","b":"😀"}'))))).toBe(true);
    });

    it("a signature whose last character carries bits the 64 bytes do not have", () => {
      const token = encodeJwt(HEADER, { jti: "x" }, signer);
      const last = token.at(-1)!;
      const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
      // 86 characters hold 516 bits: the last one's low 4 bits are padding and must be zero.
      const twin = alphabet[alphabet.indexOf(last) | 0x0f]!;
      expect(twin).not.toBe(last);
      const malleated = `${token.slice(0, -1)}${twin}`;
      expect(Buffer.from(malleated.split(".")[2]!, "base64url")).toEqual(
        Buffer.from(token.split(".")[2]!, "base64url"),
      );
      const decoded = decodeJwt(malleated);
      expect(isDecodedJwt(decoded) ? null : decoded.detail).toContain(
        "signature part is not canonical base64url",
      );
      expect(isDecodedJwt(decodeJwt(token))).toBe(true);
    });

    it("claims whose base64url has trailing bits set", () => {
      const claimsPart = part('{"a":1}'); // 7 bytes: 10 characters, the last holds 4 padding bits
      const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
      const twin = `${claimsPart.slice(0, -1)}${alphabet[alphabet.indexOf(claimsPart.at(-1)!) | 0x03]}`;
      expect(twin).not.toBe(claimsPart);
      const decoded = decodeJwt(signed(header, twin));
      expect(isDecodedJwt(decoded) ? null : decoded.detail).toContain(
        "claims part is not canonical base64url",
      );
    });
  });
});
