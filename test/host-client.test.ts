import { readFileSync } from "node:fs";
import {
  createHostPolicyClient,
  type HostPolicyClientOptions,
  type OverrideEvent,
  type PolicyAnswer,
} from "@arbiter/host";
import type {
  PerformInvocationBodyV1,
  PolicyOverrideV1,
  PolicyRequestV1,
  PolicyResponseV1,
  StartComponentBodyV1,
  StartProviderBodyV1,
} from "@arbiter/protocol";
import type { NatsConnection } from "@nats-io/nats-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectTo, type NatsServerProcess, startNatsServer, until } from "./harness/index.js";

// The reference host client against a real nats-server, with the policy service played by a plain
// NATS subscription written here, so every behaviour checked is the client's own.

const fixtureText = (name: string) =>
  readFileSync(new URL(`./data/wasmcloud-v1/${name}.json`, import.meta.url), "utf8").trim();
const fixture = (name: string) => JSON.parse(fixtureText(name)) as PolicyRequestV1;

const component = fixture("start-component").request as StartComponentBodyV1;
const provider = fixture("start-provider").request as StartProviderBodyV1;
const invocation = fixture("perform-invocation").request as PerformInvocationBodyV1;
const host = fixture("start-component").host;

let server: NatsServerProcess;
let hostNc: NatsConnection;
let serviceNc: NatsConnection;

beforeAll(async () => {
  server = await startNatsServer();
  hostNc = await connectTo(server.url);
  serviceNc = await connectTo(server.url);
});

afterAll(async () => {
  await hostNc?.close();
  await serviceNc?.close();
  await server?.stop();
});

let topicCounter = 0;

/** Fresh topics per test, so no test sees another's requests or overrides. */
function topics(): { policyTopic: string; changesTopic: string } {
  topicCounter++;
  return { policyTopic: `t${topicCounter}.policy`, changesTopic: `t${topicCounter}.policy.changes` };
}

type Reply = PolicyResponseV1 | string | "silent";

/**
 * A stand-in policy service on its own connection: records every request (raw text and parsed)
 * and answers with `decide(request)`: a response object, a raw string, or "silent" for none.
 */
async function startResponder(topic: string, decide: (request: PolicyRequestV1) => Reply) {
  const raw: string[] = [];
  const seen: PolicyRequestV1[] = [];
  const sub = serviceNc.subscribe(topic, {
    callback: (_err, msg) => {
      raw.push(msg.string());
      const request = msg.json<PolicyRequestV1>();
      seen.push(request);
      const reply = decide(request);
      if (reply === "silent") return;
      msg.respond(typeof reply === "string" ? reply : JSON.stringify(reply));
    },
  });
  // The server has the subscription once this round trip is back.
  await serviceNc.flush();
  return {
    raw,
    seen,
    [Symbol.asyncDispose]: () => sub.drain(),
  };
}

const permit = (request: PolicyRequestV1): PolicyResponseV1 => ({
  requestId: request.requestId,
  permitted: true,
  message: null,
});

function client(options: Partial<HostPolicyClientOptions> = {}) {
  return createHostPolicyClient({ nc: hostNc, host, changesTopic: null, ...options });
}

/** Records every override event of `target`, for `until` to look through. */
function recordOverrides(target: { onOverride(listener: (event: OverrideEvent) => void): () => void }) {
  const events: OverrideEvent[] = [];
  target.onOverride((event) => events.push(event));
  return events;
}

async function publishChange(topic: string, change: PolicyOverrideV1 | string): Promise<void> {
  serviceNc.publish(topic, typeof change === "string" ? change : JSON.stringify(change));
  await serviceNc.flush();
}

const override = (requestId: string, permitted: boolean, message: string): PolicyOverrideV1 => ({
  requestId,
  request_id: requestId,
  permitted,
  message,
});

describe("host policy client against a real nats-server", () => {
  it("sends the host's exact bytes, caches the answer and does not ask again", async () => {
    const { policyTopic } = topics();
    await using service = await startResponder(policyTopic, permit);
    await using host1 = client({ policyTopic });

    const first = await host1.evaluateStartComponent(component);
    const second = await host1.evaluateStartComponent(component);

    expect(service.seen).toHaveLength(1);
    const sent = service.seen[0]!;
    expect(service.raw[0]).toBe(
      fixtureText("start-component").replace(fixture("start-component").requestId, sent.requestId),
    );
    expect(first).toEqual({ permitted: true, message: null, requestId: sent.requestId, cached: false });
    expect(second).toEqual({ ...first, cached: true });
    expect(host1.sentRequestIds()).toEqual([sent.requestId]);
    expect(host1.cacheEntries()).toEqual(
      new Map([
        [
          "startComponent:hello_world-http_component_ghcr.io/wasmcloud/components/http-hello-world-rust:0.1.0",
          { permitted: true, message: null, requestId: sent.requestId },
        ],
      ]),
    );
    expect(host1.stats()).toMatchObject({ requests: 1, cacheHits: 1, failures: 0 });
  });

  it("caches a denial too", async () => {
    const { policyTopic } = topics();
    await using service = await startResponder(policyTopic, (request) => ({
      requestId: request.requestId,
      permitted: false,
      message: "issuer not trusted",
    }));
    await using host1 = client({ policyTopic });

    const first = await host1.evaluateStartProvider(provider);
    const second = await host1.evaluateStartProvider(provider);

    expect(service.seen).toHaveLength(1);
    expect(first).toMatchObject({ permitted: false, message: "issuer not trusted", cached: false });
    expect(first.failure).toBeUndefined();
    expect(second).toMatchObject({ permitted: false, message: "issuer not trusted", cached: true });
  });

  it("denies without caching when nobody answers the topic, and asks again once a service exists", async () => {
    const { policyTopic } = topics();
    await using host1 = client({ policyTopic });

    const alone = await host1.evaluatePerformInvocation(invocation);

    expect(alone).toMatchObject({ permitted: false, cached: false, failure: "no-responders" });
    expect(host1.cacheEntries().size).toBe(0);

    await using service = await startResponder(policyTopic, permit);
    const answered = await host1.evaluatePerformInvocation(invocation);

    expect(service.seen).toHaveLength(1);
    expect(answered).toMatchObject({ permitted: true, cached: false });
    expect(host1.sentRequestIds()).toHaveLength(2);
    expect([...host1.requestKeys().keys()]).toEqual([service.seen[0]!.requestId]);
  });

  it("denies without caching on a timeout, and ignores a later override for the failed request", async () => {
    const { policyTopic, changesTopic } = topics();
    await using service = await startResponder(policyTopic, () => "silent");
    await using host1 = client({ policyTopic, changesTopic, timeoutMs: 200 });
    await host1.start();
    const events = recordOverrides(host1);

    const first = await host1.evaluateStartComponent(component);
    const second = await host1.evaluateStartComponent(component);

    expect(first).toMatchObject({ permitted: false, cached: false, failure: "timeout" });
    expect(second).toMatchObject({ permitted: false, cached: false, failure: "timeout" });
    expect(service.seen).toHaveLength(2);
    expect(host1.cacheEntries().size).toBe(0);
    expect(host1.stats()).toMatchObject({ requests: 2, failures: 2, cacheHits: 0 });

    // The host records request id → cache key only with a decoded response (host crate
    // `policy/nats.rs`), so a late decision for a timed-out request cannot create an entry.
    await publishChange(changesTopic, override(first.requestId!, true, "late grant"));
    const ignored = await until(() => events.find((e) => e.outcome === "unknown-request-id"), {
      name: "the override for the timed-out request to be handled",
      timeout: 5000,
    });
    expect(ignored).toMatchObject({ requestId: first.requestId });
    expect(host1.cacheEntries().size).toBe(0);
  });

  it.each([
    ["not JSON", "yes"],
    ["snake_case request_id only", '{"request_id":"x","permitted":true,"message":null}'],
    ["permitted as a string", '{"requestId":"x","permitted":"true","message":null}'],
  ])("denies without caching an undecodable answer: %s", async (_, reply) => {
    const { policyTopic } = topics();
    await using service = await startResponder(policyTopic, () => reply);
    await using host1 = client({ policyTopic });

    const first = await host1.evaluateStartComponent(component);
    await host1.evaluateStartComponent(component);

    expect(first).toMatchObject({ permitted: false, cached: false, failure: "undecodable" });
    expect(first.message).toMatch(/failed to deserialize policy response/);
    expect(service.seen).toHaveLength(2);
    expect(host1.cacheEntries().size).toBe(0);
  });

  it("accepts an answer without message, like the host's serde", async () => {
    const { policyTopic } = topics();
    await using _service = await startResponder(policyTopic, (request) =>
      JSON.stringify({ requestId: request.requestId, permitted: true, extra: 1 }),
    );
    await using host1 = client({ policyTopic });

    expect(await host1.evaluateStartComponent(component)).toMatchObject({ permitted: true, message: null });
  });

  it("caches an answer for another request id like the host, or denies it when strict", async () => {
    const { policyTopic } = topics();
    await using _service = await startResponder(policyTopic, () => ({
      requestId: "someone-else",
      permitted: true,
      message: null,
    }));
    await using lenient = client({ policyTopic });
    await using strict = client({ policyTopic, strictRequestId: true });

    expect(await lenient.evaluateStartComponent(component)).toMatchObject({
      permitted: true,
      requestId: "someone-else",
    });
    expect(lenient.stats().mismatchedRequestIds).toBe(1);
    expect(await strict.evaluateStartComponent(component)).toMatchObject({
      permitted: false,
      cached: false,
      failure: "mismatched-request-id",
    });
    expect(strict.cacheEntries().size).toBe(0);
  });

  it("applies overrides for its own request ids in both directions and ignores others", async () => {
    const { policyTopic, changesTopic } = topics();
    await using service = await startResponder(policyTopic, permit);
    await using host1 = client({ policyTopic, changesTopic });
    await host1.start();
    expect(host1.status).toBe("ready");
    const events = recordOverrides(host1);
    await host1.evaluateStartComponent(component);
    const requestId = service.seen[0]!.requestId;
    const [cacheKey] = [...host1.cacheEntries().keys()];

    await publishChange(changesTopic, override(requestId, false, "revoked by rule no-untrusted"));
    await until(() => host1.stats().overridesApplied === 1, {
      name: "the revocation to be applied",
      timeout: 5000,
    });

    expect(events[0]).toEqual({
      outcome: "applied",
      requestId,
      cacheKey,
      permitted: false,
      message: "revoked by rule no-untrusted",
      previous: { permitted: true, message: null, requestId },
    });
    expect(await host1.evaluateStartComponent(component)).toEqual({
      permitted: false,
      message: "revoked by rule no-untrusted",
      requestId,
      cached: true,
    });

    await publishChange(changesTopic, override(requestId, true, "granted again"));
    await until(() => host1.stats().overridesApplied === 2, {
      name: "the grant to be applied",
      timeout: 5000,
    });

    expect(await host1.evaluateStartComponent(component)).toMatchObject({
      permitted: true,
      message: "granted again",
      cached: true,
    });

    const before = host1.cacheEntries();
    await publishChange(changesTopic, override("01945242-0000-0000-0000-000000000000", false, "not yours"));
    await publishChange(changesTopic, "{not json");
    await until(() => events.some((e) => e.outcome === "undecodable"), {
      name: "the unknown and the undecodable change to be handled",
      timeout: 5000,
    });

    expect(events.map((e) => e.outcome)).toEqual(["applied", "applied", "unknown-request-id", "undecodable"]);
    expect(host1.cacheEntries()).toEqual(before);
    expect(host1.stats()).toMatchObject({
      overridesApplied: 2,
      overridesIgnored: 1,
      overridesUndecodable: 1,
      requests: 1,
    });
    expect(service.seen).toHaveLength(1);
  });

  it("reports degraded when the server refuses its changes subscription, and stays stopped after stop()", async () => {
    const { policyTopic, changesTopic } = topics();
    await using limited = await startNatsServer({
      extraConfig: `authorization { users: [ { user: host, password: host, permissions: { subscribe: { allow: ["_INBOX.>"] } } } ] }`,
    });
    const nc = await connectTo(limited.url, { user: "host", pass: "host" });
    try {
      const refused = createHostPolicyClient({ nc, policyTopic, changesTopic, host });
      await refused.start();
      await until(() => refused.status === "degraded", {
        name: "the refused subscription to degrade",
        timeout: 5000,
      });

      await refused.stop();
      expect(refused.status).toBe("stopped");
    } finally {
      await nc.close();
    }
  });

  it("stops receiving overrides after stop(), leaving the connection open", async () => {
    const { policyTopic, changesTopic } = topics();
    await using service = await startResponder(policyTopic, permit);
    const host1 = client({ policyTopic, changesTopic });
    await host1.start();
    await host1.evaluateStartComponent(component);

    await host1.stop();
    await publishChange(changesTopic, override(service.seen[0]!.requestId, false, "too late"));
    // A second client on the same topic proves the change was delivered by the time it sees it.
    await using witness = client({ policyTopic, changesTopic });
    await witness.start();
    const seenByWitness = recordOverrides(witness);
    await publishChange(changesTopic, override("marker", false, "marker"));
    await until(() => seenByWitness.length > 0, { name: "the witness to receive the marker", timeout: 5000 });

    expect(host1.status).toBe("stopped");
    expect(host1.stats().overridesApplied + host1.stats().overridesIgnored).toBe(0);
    expect(hostNc.isClosed()).toBe(false);
  });

  it("keys the cache without claims, annotations or maxInstances", async () => {
    const { policyTopic } = topics();
    await using service = await startResponder(policyTopic, permit);
    await using host1 = client({ policyTopic });
    const otherClaims = {
      ...component.claims!,
      issuer: "ACOJJN6WUP4ODD75XEBKKTCCUJJCY5ZKQ56XVKYK4BEJWGVAOOQHZMCW",
      expired: true,
    };

    await host1.evaluateStartComponent(component);
    const answers: PolicyAnswer[] = [
      await host1.evaluateStartComponent({ ...component, claims: otherClaims }),
      await host1.evaluateStartComponent({ ...component, claims: null }),
      await host1.evaluateStartComponent({ ...component, annotations: { "wasmcloud.dev/appspec": "other" } }),
      await host1.evaluateStartComponent({ ...component, maxInstances: 50 }),
    ];
    await host1.evaluateStartProvider(provider);
    await host1.evaluateStartProvider({ ...provider, claims: null, annotations: {} });
    await host1.evaluatePerformInvocation(invocation);
    await host1.evaluatePerformInvocation({ ...invocation, target: { ...invocation.target, claims: null } });
    await host1.evaluatePerformInvocation({ ...invocation, function: "other" });
    await host1.evaluateStartComponent({ ...component, imageRef: "ghcr.io/wasmcloud/other:1.0.0" });

    expect(answers.every((a) => a.cached)).toBe(true);
    expect(service.seen.map((r) => r.kind)).toEqual([
      "startComponent",
      "startProvider",
      "performInvocation",
      "performInvocation",
      "startComponent",
    ]);
  });

  it("sends concurrent identical evaluations each (1.x) or one at a time under the cache lock (0.82)", async () => {
    const { policyTopic } = topics();
    await using service = await startResponder(policyTopic, permit);
    await using v1 = client({ policyTopic });
    await using v082 = client({ policyTopic, lineage: "v0.82" });
    const legacy = {
      source: {},
      target: { publicKey: "MBFFVNGFK3IA2ZXXG5DQXQNYM6TNG45PHJMJIJFVFI6YKS3XTXL3DRRK", issuer: "ACOJJN" },
      host: { publicKey: host.publicKey, latticeId: "default", labels: {} },
      action: "start_actor" as const,
    };

    const both = await Promise.all([
      v1.evaluateStartComponent(component),
      v1.evaluateStartComponent(component),
    ]);
    expect(both.map((a) => a.cached)).toEqual([false, false]);
    expect(service.seen).toHaveLength(2);

    const legacyAnswers = await Promise.all([v082.evaluateLegacy(legacy), v082.evaluateLegacy(legacy)]);
    expect(legacyAnswers.map((a) => a.cached)).toEqual([false, true]);
    expect(service.seen).toHaveLength(3);
    const sent = service.raw[2]!;
    expect(Object.keys(JSON.parse(sent))).toEqual(["requestId", "source", "target", "host", "action"]);
    expect([...v082.cacheEntries().keys()][0]).toMatch(/^start_actor:\[/);
  });
});
