import { createHostPolicyClient, type HostPolicyClient, type PolicyAnswer } from "@arbiter/host";
import type {
  PerformInvocationBodyV1,
  PolicyRequestV1,
  StartComponentBodyV1,
  StartProviderBodyV1,
} from "@arbiter/protocol";
import type { NatsConnection } from "@nats-io/nats-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectTo, until } from "../harness/index.js";
import { type SingleNodeArbiter, startSingleNodeArbiter } from "../support/arbiter.js";
import { FIXTURES, fixtureBytes, fixtureJson } from "../support/fixtures.js";
import { type PeerProcess, startPeer } from "./peer-process.js";
import { opaPolicyServerBin } from "./peers-cache.js";

// The seed's OPA policy server (peers/opa-policy-server, the wasmCloud 1.0 blog's example) beside
// Arbiter's worker on one real nats-server: the same requests, the seed's policy.rego against
// deploy/rules/example.yaml, asked through the reference host client as a host would.

const ARBITER_TOPIC = "wasmcloud.policy";
const OPA_TOPIC = "opa.policy";
const READY = /^Listening for policy requests\.\.\.$/;

let arbiter: SingleNodeArbiter;
let nc: NatsConnection;
let opa: PeerProcess;

function startOpa(args: readonly string[]): Promise<PeerProcess> {
  return startPeer(opaPolicyServerBin(), ["-nats", arbiter.server.url, ...args], { ready: READY });
}

beforeAll(async () => {
  // Fails here, naming `npm run peers`, when the server is not in the cache.
  opaPolicyServerBin();
  arbiter = await startSingleNodeArbiter();
  nc = await connectTo(arbiter.server.url);
  opa = await startOpa(["-topic", OPA_TOPIC]);
});

afterAll(async () => {
  await opa?.stop();
  await nc?.close();
  await arbiter?.stop();
});

/** Records the requests published on `topic` (a plain subscriber beside the policy servers). */
async function observe(topic: string) {
  const seen: PolicyRequestV1[] = [];
  const sub = nc.subscribe(topic, {
    callback: (_err, msg) => {
      seen.push(msg.json<PolicyRequestV1>());
    },
  });
  await nc.flush();
  return { seen, [Symbol.asyncDispose]: () => sub.drain() };
}

type FixtureName = (typeof FIXTURES)[number]["name"];

/** Asks `client` about a fixture's body, by the fixture's kind. */
function evaluate(client: HostPolicyClient, name: FixtureName): Promise<PolicyAnswer> {
  const request = fixtureJson(name)["request"];
  switch (name) {
    case "start-component":
      return client.evaluateStartComponent(request as StartComponentBodyV1);
    case "start-provider":
      return client.evaluateStartProvider(request as StartProviderBodyV1);
    case "perform-invocation":
      return client.evaluatePerformInvocation(request as PerformInvocationBodyV1);
  }
}

function hostClient(policyTopic: string): HostPolicyClient {
  const host = fixtureJson("start-component")["host"] as HostPolicyClientHost;
  return createHostPolicyClient({ nc, host, policyTopic, changesTopic: null, timeoutMs: 5_000 });
}
type HostPolicyClientHost = Parameters<typeof createHostPolicyClient>[0]["host"];

describe("the seed's OPA policy server beside Arbiter", () => {
  it("answers the three fixtures through the reference host client as Arbiter does under the example rules", async () => {
    await using opaRequests = await observe(OPA_TOPIC);
    await using arbiterRequests = await observe(ARBITER_TOPIC);
    await using viaOpa = hostClient(OPA_TOPIC);
    await using viaArbiter = hostClient(ARBITER_TOPIC);

    const rows: string[] = [];
    for (const [i, { name, permitted }] of FIXTURES.entries()) {
      const fromOpa = await evaluate(viaOpa, name);
      const fromArbiter = await evaluate(viaArbiter, name);
      expect(fromOpa.failure, `OPA on ${name}`).toBeUndefined();
      expect(fromArbiter.failure, `Arbiter on ${name}`).toBeUndefined();
      expect({ opa: fromOpa.permitted, arbiter: fromArbiter.permitted }, name).toEqual({
        opa: permitted,
        arbiter: permitted,
      });

      const opaRequest = await until(() => opaRequests.seen[i], {
        name: `the request for ${name} on ${OPA_TOPIC}`,
      });
      const arbiterRequest = await until(() => arbiterRequests.seen[i], {
        name: `the request for ${name} on ${ARBITER_TOPIC}`,
      });
      // The seed's server answers with a new random UUID; Arbiter echoes the request's id.
      expect(fromOpa.requestId).not.toBe(opaRequest.requestId);
      expect(fromArbiter.requestId).toBe(arbiterRequest.requestId);
      // The seed's server sends no message; Arbiter says which rule decided.
      expect(fromOpa.message).toBeNull();
      rows.push(
        `${name.padEnd(20)} opa=${fromOpa.permitted} arbiter=${fromArbiter.permitted} agree=${fromOpa.permitted === fromArbiter.permitted}`,
      );
    }
    // A real host caches these answers anyway: it does not check the reply's id.
    expect(viaOpa.stats().mismatchedRequestIds).toBe(FIXTURES.length);
    expect(viaArbiter.stats().mismatchedRequestIds).toBe(0);
    console.log(`OPA policy server vs Arbiter under the example policy:\n${rows.join("\n")}`);
  });

  it("answers the fixtures' exact bytes as Arbiter does", async () => {
    for (const { name, permitted } of FIXTURES) {
      const bytes = fixtureBytes(name);
      const [fromOpa, fromArbiter] = await Promise.all([
        nc.request(OPA_TOPIC, bytes, { timeout: 5_000 }),
        nc.request(ARBITER_TOPIC, bytes, { timeout: 5_000 }),
      ]);
      const opaAnswer = fromOpa.json<{ requestId: string; permitted: boolean }>();
      expect(Object.keys(opaAnswer), "the seed's reply has exactly these keys").toEqual([
        "permitted",
        "requestId",
      ]);
      expect(opaAnswer.requestId).toMatch(
        /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/,
      );
      expect(opaAnswer.permitted, `OPA on ${name}`).toBe(permitted);
      expect(fromArbiter.json<{ permitted: boolean }>().permitted, `Arbiter on ${name}`).toBe(permitted);
    }
  });

  it("-queue puts the servers in a queue group that shares the requests; without it each server answers", async () => {
    /** Publishes `requests` fixture requests on `topic` with one reply inbox and counts the replies. */
    const publishCounted = async (topic: string, requests: number) => {
      let replies = 0;
      const inbox = `_INBOX.peers.${topic}`;
      const sub = nc.subscribe(inbox, {
        callback: () => {
          replies++;
        },
      });
      await nc.flush();
      for (let i = 0; i < requests; i++) nc.publish(topic, fixtureBytes("start-provider"), { reply: inbox });
      await nc.flush();
      return { replies: () => replies, [Symbol.asyncDispose]: () => sub.drain() };
    };
    /** The queue group of each OPA server's subscription on `topic`, from the server's monitoring. */
    const queueGroups = async (topic: string) => {
      const monitor = arbiter.server.monitorUrl;
      if (!monitor) throw new Error("the test server has no monitoring endpoint");
      const connz = (await (await fetch(`${monitor}/connz?subs=detail&limit=1024`)).json()) as {
        connections: { name?: string; subscriptions_list_detail?: { subject: string; qgroup?: string }[] }[];
      };
      return connz.connections
        .filter((c) => c.name === "opa-policy-server")
        .flatMap((c) => c.subscriptions_list_detail ?? [])
        .filter((sub) => sub.subject === topic)
        .map((sub) => sub.qgroup ?? null);
    };

    await using _grouped1 = await startOpa(["-topic", "opa.grouped", "-queue", "opa"]);
    await using _grouped2 = await startOpa(["-topic", "opa.grouped", "-queue", "opa"]);
    await using _plain1 = await startOpa(["-topic", "opa.plain"]);
    await using _plain2 = await startOpa(["-topic", "opa.plain"]);
    expect(await queueGroups("opa.grouped")).toEqual(["opa", "opa"]);
    expect(await queueGroups("opa.plain")).toEqual([null, null]);

    await using plain = await publishCounted("opa.plain", 10);
    await until(() => plain.replies() === 20, {
      name: "two answers to each of 10 requests without a queue group",
    });
    await using grouped = await publishCounted("opa.grouped", 10);
    await until(() => grouped.replies() === 10, {
      name: "an answer to each of 10 requests in the queue group",
    });
  });

  it("stops on a request that is not JSON, as the seed does; -on-bad-input skip keeps serving", async () => {
    await using seedLike = await startOpa(["-topic", "opa.fragile"]);
    nc.publish("opa.fragile", "not json", { reply: "_INBOX.peers.fragile" });
    await nc.flush();
    await until(() => seedLike.exit() !== undefined, { name: "the seed-like server to exit" });
    expect(seedLike.exit()).toBe(1);
    expect(seedLike.stderr.join("\n")).toContain("request is not a JSON object");

    await using tolerant = await startOpa(["-topic", "opa.tolerant", "-on-bad-input", "skip"]);
    await expect(nc.request("opa.tolerant", "not json", { timeout: 1_000 })).rejects.toThrow();
    const answer = await nc.request("opa.tolerant", fixtureBytes("start-provider"), { timeout: 5_000 });
    expect(answer.json<{ permitted: boolean }>().permitted).toBe(true);
    expect(tolerant.exit()).toBeUndefined();
  });
});
