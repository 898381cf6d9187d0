import { describe, expect, it } from "vitest";
import { policyRequestInvocation, signPolicyRequest } from "./policy-invocation.js";
import { createSigner, generateKey } from "./signing.js";
import { verifyInvocation } from "./verify-invocation.js";

describe("a signed policy request", () => {
  const cluster = createSigner(generateKey("C").seed, "C");
  const host = generateKey("N").publicKey;
  const request = new TextEncoder().encode('{"requestId":"r1"}');
  const subject = (policyTopic: string, lattice: string) => ({
    hostKey: host,
    lattice,
    policyTopic,
    kind: "startComponent",
    request,
  });
  const verifiedOn = (token: string, policyTopic: string, lattice: string) =>
    verifyInvocation(policyRequestInvocation(subject(policyTopic, lattice), token), {
      issuers: [cluster.publicKey],
      now: new Date(),
    });

  it("verifies on the topic and lattice it was signed for", () => {
    const token = signPolicyRequest(subject("wasmcloud.policy", "default"), cluster);
    expect(verifiedOn(token, "wasmcloud.policy", "default").valid).toBe(true);
  });

  // Entity URLs lowercase link names and drop contract and link name for keys starting with M:
  // neither may let a token signed for one deployment's topic or lattice verify on another's.
  it.each([
    ["another topic", ["wasmcloud.policy", "default"], ["other.policy", "default"]],
    ["a topic differing in case only", ["Wasmcloud.Policy", "default"], ["wasmcloud.policy", "default"]],
    ["another lattice starting with M", ["wasmcloud.policy", "Mprod"], ["other.policy", "Mprod"]],
    ["another lattice", ["wasmcloud.policy", "Mprod"], ["wasmcloud.policy", "Mstaging"]],
  ] as const)("does not verify for %s", (_, signedFor, presentedOn) => {
    const token = signPolicyRequest(subject(signedFor[0], signedFor[1]), cluster);
    const result = verifiedOn(token, presentedOn[0], presentedOn[1]);
    expect(result.valid).toBe(false);
    expect(result.reasons.map((r) => r.code)).toContain("target-mismatch");
  });
});
