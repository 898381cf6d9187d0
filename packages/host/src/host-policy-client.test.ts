import { describe, expect, it } from "vitest";
import { HostClientStoppedError, HostConfigError } from "./errors.js";
import { createHostPolicyClient } from "./host-policy-client.js";

const host = {
  publicKey: "NBLSJGGOETB677FQL63PWKDCVMOW4LXVI7S6WXSP55H7L5RNRKUDZKGE",
  lattice: "default",
  labels: {},
};
const body = { componentId: "c", imageRef: "r", maxInstances: 1, annotations: {}, claims: null };

describe("createHostPolicyClient options", () => {
  const nc = { request: () => undefined, subscribe: () => undefined } as never;

  it("applies the host's defaults", () => {
    const client = createHostPolicyClient({ nc, host });

    expect(client.status).toBe("starting");
    expect(client.stats()).toEqual({
      requests: 0,
      cacheHits: 0,
      failures: 0,
      overridesApplied: 0,
      overridesIgnored: 0,
      overridesUndecodable: 0,
      mismatchedRequestIds: 0,
    });
  });

  it.each([
    ["no connection", { nc: undefined as never, host }],
    ["a zero timeout", { nc, host, timeoutMs: 0 }],
    ["a wildcard topic", { nc, host, policyTopic: "wasmcloud.>" }],
    ["a host without key", { nc, host: { ...host, publicKey: "" } }],
    ["an unknown lineage", { nc, host, lineage: "v2" as "v1" }],
  ])("rejects %s with HostConfigError", (_, options) => {
    expect(() => createHostPolicyClient(options)).toThrow(HostConfigError);
  });

  // A 1.9 host without a policy topic asks no one and permits everything (crate
  // `policy.rs`, `evaluate_action`): that is the host's real default, not wasmcloud.policy.
  it("with policyTopic null permits without a request, caching nothing, as a host without a policy topic does", async () => {
    const refuse = () => {
      throw new Error("no request expected");
    };
    const client = createHostPolicyClient({
      nc: { request: refuse, subscribe: refuse } as never,
      host,
      policyTopic: null,
      changesTopic: null,
    });

    expect(await client.evaluateStartComponent(body)).toEqual({
      permitted: true,
      message: null,
      requestId: "",
      cached: false,
    });
    expect(client.stats().requests).toBe(0);
    expect(client.cacheEntries().size).toBe(0);
    expect(client.sentRequestIds()).toEqual([]);
  });

  it("refuses to evaluate or start once stopped", async () => {
    const client = createHostPolicyClient({ nc, host, changesTopic: null });

    await client.stop();

    expect(client.status).toBe("stopped");
    await expect(client.evaluateStartComponent(body)).rejects.toThrow(HostClientStoppedError);
    await expect(client.start()).rejects.toThrow(HostClientStoppedError);
  });
});
