import { normalizeV1, PolicyRequestV1 } from "@arbiter/protocol";
import { createMemoryReplayGuard } from "@arbiter/store";
import { createSigner, generateKey, signPolicyRequest } from "@arbiter/trust";
import { describe, expect, it } from "vitest";
import { parseWorkerConfig } from "./config.js";
import { MAX_INVOCATION_TOKEN_LENGTH, RequestVerifier } from "./request-signatures.js";

const cluster = createSigner(generateKey("C").seed, "C");
const hostKey = generateKey("N").publicKey;
const body = {
  requestId: "r-1",
  kind: "startProvider",
  version: "v1",
  request: { providerId: "p", imageRef: "ghcr.io/x/p:1", annotations: {}, claims: null },
  host: { publicKey: hostKey, lattice: "default", labels: {} },
};
const bytes = Buffer.from(JSON.stringify(body));
const request = normalizeV1(PolicyRequestV1.parse(body));
const NOW = new Date("2026-03-01T12:00:00Z");

function sign(now = NOW, jti?: string): string {
  return signPolicyRequest(
    { hostKey, lattice: "default", policyTopic: "wasmcloud.policy", kind: "startProvider", request: bytes },
    cluster,
    { now, ...(jti ? { jti } : {}) },
  );
}

describe("RequestVerifier", () => {
  const verifier = () =>
    new RequestVerifier({
      mode: "required",
      issuers: [cluster.publicKey],
      policyTopic: "wasmcloud.policy",
      maxTokenAgeMs: 60_000,
      maxClockSkewMs: 5_000,
      guard: createMemoryReplayGuard(65_000, () => NOW.getTime()),
    });

  it("verifies a fresh token once, then calls it replayed", async () => {
    const v = verifier();
    const token = sign();
    expect(await v.check(request, bytes, token, NOW)).toMatchObject({
      verified: true,
      issuer: cluster.publicKey,
    });
    expect(await v.check(request, bytes, token, NOW)).toMatchObject({
      verified: false,
      reasons: ["replayed"],
    });
  });

  it("answers at once, without a replay claim, for unsigned, stale and future tokens", () => {
    const v = verifier();
    expect(v.check(request, bytes, undefined, NOW)).toMatchObject({ signed: false, reasons: ["unsigned"] });
    const stale = sign(new Date(NOW.getTime() - 61_000), "stale");
    expect(v.check(request, bytes, stale, NOW)).toMatchObject({ signed: true, reasons: ["too-old"] });
    const future = sign(new Date(NOW.getTime() + 6_000), "future");
    expect(v.check(request, bytes, future, NOW)).toMatchObject({ reasons: ["issued-in-the-future"] });
    // Refused before any claim, so the id is still unused when a valid token carries it.
    return expect(Promise.resolve(v.check(request, bytes, sign(NOW, "stale"), NOW))).resolves.toMatchObject({
      verified: true,
    });
  });

  it("refuses a token longer than any real one before decoding it, even signed, and claims nothing", async () => {
    const v = verifier();
    const huge = sign(NOW, "x".repeat(20_000));
    expect(huge.length).toBeGreaterThan(MAX_INVOCATION_TOKEN_LENGTH);
    const result = v.check(request, bytes, huge, NOW);
    expect(result).toMatchObject({
      verified: false,
      signed: true,
      reasons: ["malformed-token"],
      tokenId: null,
    });
    expect(JSON.stringify(result).length).toBeLessThan(1000);
    expect(await v.check(request, bytes, sign(NOW, "x".repeat(200)), NOW)).toMatchObject({ verified: true });
  });

  it("refuses several tokens for one request, whichever of them is valid", () => {
    const v = verifier();
    expect(v.check(request, bytes, [sign(NOW, "first"), "garbage"], NOW)).toMatchObject({
      signed: true,
      reasons: ["malformed-token"],
    });
    expect(v.check(request, bytes, ["garbage", sign(NOW, "second")], NOW)).toMatchObject({
      reasons: ["malformed-token"],
    });
  });
});

describe("requestSignatures settings", () => {
  it("default to off, and refuse required without issuers or with a key that is not a cluster key", () => {
    expect(parseWorkerConfig({})).toMatchObject({ requestSignatures: "off", maxTokenAgeMs: 60_000 });
    expect(() => parseWorkerConfig({ requestSignatures: "required" })).toThrow(/clusterIssuers/);
    expect(() =>
      parseWorkerConfig({ requestSignatures: "verify-if-present", clusterIssuers: [hostKey] }),
    ).toThrow(/clusterIssuers: invalid cluster key/);
  });
});
