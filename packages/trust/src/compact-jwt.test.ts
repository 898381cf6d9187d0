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
});
