import { isArbiterError } from "@arbiter/protocol";
import { generateKey } from "@arbiter/trust";
import { describe, expect, it } from "vitest";
import { isInboxReply, parseWorkerConfig } from "./config.js";

describe("parseWorkerConfig", () => {
  it("takes a deployment id and enrolled worker keys, refusing what is not one, and refuses unenrolled keys by default", () => {
    const key = generateKey("N").publicKey;
    const parsed = parseWorkerConfig({ deployment: "ABCDEFGHIJKLMNOPQRSTUVWXYZ", workerKeys: [key] });
    expect(parsed).toMatchObject({
      deployment: "ABCDEFGHIJKLMNOPQRSTUVWXYZ",
      workerKeys: [key],
      allowUnenrolled: false,
    });
    expect(() => parseWorkerConfig({ deployment: "staging" })).toThrow(
      /deployment: expected a deployment id/,
    );
    expect(() => parseWorkerConfig({ workerKeys: [generateKey("O").publicKey] })).toThrow(
      /workerKeys\.0: expected an nkey public key starting with N/,
    );
  });

  it("publishes overrides on the shared changes topic unless told to use each host's own subject", () => {
    expect(parseWorkerConfig({}).changesPerHost).toBe(false);
    expect(parseWorkerConfig({ changesPerHost: true }).changesPerHost).toBe(true);
  });

  it("follows the default lattice and reaps after 70 s unless told otherwise, refusing a lattice name with dots", () => {
    expect(parseWorkerConfig({})).toMatchObject({
      lattices: ["default"],
      hostTimeoutMs: 70_000,
      hostPingWaitMs: 1000,
    });
    expect(parseWorkerConfig({ lattices: ["prod", "edge-1"], hostTimeoutMs: 5000 })).toMatchObject({
      lattices: ["prod", "edge-1"],
      hostTimeoutMs: 5000,
    });
    expect(() => parseWorkerConfig({ lattices: ["a.>"] })).toThrow(
      /lattices\.0: "a\.>": expected a lattice name/,
    );
    expect(() => parseWorkerConfig({ lattices: [] })).toThrow(/lattices/);
  });

  it("refuses a maxPayloadBytes too small for any real request, naming it", () => {
    let thrown: unknown;
    try {
      parseWorkerConfig({ maxPayloadBytes: 10 });
    } catch (err) {
      thrown = err;
    }
    expect(isArbiterError(thrown, "INVALID_CONFIG")).toBe(true);
    expect(String(thrown)).toMatch(/maxPayloadBytes: at least 4096 bytes/);
    expect(parseWorkerConfig({ maxPayloadBytes: 4096 }).maxPayloadBytes).toBe(4096);
  });

  it("refuses a policy or changes topic with a space, an empty token or a wildcard, naming it", () => {
    for (const topic of [
      "",
      "a b",
      " wasmcloud.policy",
      "wasmcloud.policy\t",
      "wasmcloud.\u0000policy",
      "wasmcloud..policy",
      ".wasmcloud",
      "wasmcloud.",
      "wasmcloud.>",
      "wasmcloud.*.policy",
      "*",
      ">",
      "wasm*cloud.policy",
    ]) {
      for (const setting of ["policyTopic", "changesTopic"] as const) {
        const other = setting === "policyTopic" ? { changesTopic: "c.changes" } : { policyTopic: "c.policy" };
        let thrown: unknown;
        try {
          parseWorkerConfig({ [setting]: topic, ...other });
        } catch (err) {
          thrown = err;
        }
        expect(isArbiterError(thrown, "INVALID_CONFIG"), `${setting} ${JSON.stringify(topic)}`).toBe(true);
        expect(String(thrown)).toContain(`${setting}: ${JSON.stringify(topic)}: expected a NATS subject`);
      }
    }
  });

  it("refuses the same subject as both policy and changes topic", () => {
    for (const config of [
      { policyTopic: "lattice.policy", changesTopic: "lattice.policy" },
      { policyTopic: "wasmcloud.policy.changes" },
      { changesTopic: "wasmcloud.policy" },
    ]) {
      expect(() => parseWorkerConfig(config), JSON.stringify(config)).toThrow(
        /changesTopic: "[\w.]+": the same subject as policyTopic/,
      );
    }
  });

  it("takes literal topics, defaulting to wasmCloud's", () => {
    expect(parseWorkerConfig({})).toMatchObject({
      policyTopic: "wasmcloud.policy",
      changesTopic: "wasmcloud.policy.changes",
    });
    const config = parseWorkerConfig({
      policyTopic: "lattice-1.policy_v2",
      changesTopic: "lattice-1.changes",
    });
    expect(config.policyTopic).toBe("lattice-1.policy_v2");
    expect(config.changesTopic).toBe("lattice-1.changes");
  });

  it("answers _INBOX. and service-import replies (_R_.) by default", () => {
    const config = parseWorkerConfig({});
    expect(config.inboxPrefixes).toEqual(["_INBOX.", "_R_."]);
    expect(isInboxReply("_R_.mwuTgy.AQCcxO", config.inboxPrefixes)).toBe(true);
    expect(isInboxReply("_R_.>", config.inboxPrefixes)).toBe(false);
    expect(config.onLogOutage).toBe("silent");
    expect(isInboxReply("_INBOX.abc.1", config.inboxPrefixes)).toBe(true);
    expect(isInboxReply("wasmcloud.policy.changes", config.inboxPrefixes)).toBe(false);
    expect(isInboxReply("arbiter.decisions.recorded", config.inboxPrefixes)).toBe(false);
  });

  it("answers only one literal subject under the prefix: no wildcard or empty token, no space", () => {
    const prefixes = parseWorkerConfig({}).inboxPrefixes;
    for (const reply of ["_INBOX.a*b.1", "_INBOX.>x", "_INBOX.ab-c_D.9"]) {
      expect(isInboxReply(reply, prefixes), reply).toBe(true);
    }
    for (const reply of [
      "_INBOX",
      "_INBOX.",
      "_INBOXabc",
      "_INBOX.>",
      "_INBOX.*",
      "_INBOX.abc.*",
      "_INBOX.*.abc",
      "_INBOX..abc",
      "_INBOX.abc.",
      "_INBOX.a b",
      "_INBOX.a\tb",
      "_INBOX.a\u0000b",
      "_INBOX.a\u007fb",
    ]) {
      expect(isInboxReply(reply, prefixes), JSON.stringify(reply)).toBe(false);
    }
  });

  it("refuses an inbox prefix that would reach the changes topic, the policy topic or Arbiter's subjects", () => {
    for (const inboxPrefixes of [
      ["wasmcloud."],
      ["wasmcloud.policy.changes"],
      ["arbiter."],
      ["arb"],
      ["w"],
      ["wasmcloud.policy.changes.x."],
    ]) {
      let caught: unknown;
      try {
        parseWorkerConfig({ inboxPrefixes });
      } catch (err) {
        caught = err;
      }
      expect(isArbiterError(caught, "INVALID_CONFIG"), inboxPrefixes[0]).toBe(true);
      expect((caught as Error).message).toMatch(/^inboxPrefixes: /);
    }
    expect(() => parseWorkerConfig({ inboxPrefixes: ["_INBOX.>"] })).toThrow(/inboxPrefixes/);
    expect(() => parseWorkerConfig({ inboxPrefixes: [] })).toThrow(/inboxPrefixes/);
    expect(parseWorkerConfig({ inboxPrefixes: ["myapp.replies."] }).inboxPrefixes).toEqual([
      "myapp.replies.",
    ]);
  });

  it("names the setting of a bad admin key", () => {
    expect(() => parseWorkerConfig({ adminKeys: ["Onope"] })).toThrow(/^adminKeys: /);
  });
});
