import { createHostPolicyClient } from "@arbiter/host";
import { DecisionV1, PolicyResponseV1 } from "@arbiter/protocol";
import { openJetStreamStore } from "@arbiter/store";
import { verifySealedJson } from "@arbiter/trust";
import type { Worker } from "@arbiter/worker";
import { jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type SingleNodeArbiter, startSingleNodeArbiter } from "./support/arbiter.js";
import { FIXTURES, fixtureBytes, fixtureJson, legacyStartActor } from "./support/fixtures.js";

const decoder = new TextDecoder();

describe("decision path on one server", () => {
  let arbiter: SingleNodeArbiter;
  let nc: NatsConnection;
  let worker: Worker;

  beforeAll(async () => {
    arbiter = await startSingleNodeArbiter({ id: "w1" });
    ({ nc, worker } = arbiter);
  });

  afterAll(async () => {
    await arbiter?.stop();
  });

  it("answers the real fixtures as the example policy says, echoing the request id", async () => {
    expect(worker.status).toBe("ready");
    expect(worker.revision).toBe(2);
    for (const fixture of FIXTURES) {
      const reply = await nc.request("wasmcloud.policy", fixtureBytes(fixture.name), { timeout: 2000 });
      const answer = PolicyResponseV1.parse(JSON.parse(decoder.decode(reply.data)));
      expect(answer.requestId).toBe(fixtureJson(fixture.name).requestId);
      expect(answer.permitted, fixture.name).toBe(fixture.permitted);
    }
  });

  it("records every answer in the decision stream before replying", async () => {
    const store = await openJetStreamStore(nc);
    // A subscriber on the decision subject, on the requester's own connection: the server delivers
    // there in order, so the record must be in hand before the reply is.
    const recordsSeen: string[] = [];
    const spy = nc.subscribe("arbiter.decisions.>", {
      callback: (_err, msg) => {
        recordsSeen.push(msg.string());
      },
    });
    await nc.flush();
    const template = fixtureJson("start-provider");
    for (let i = 0; i < 10; i++) {
      const requestId = `ordered-${i}`;
      const payload = new TextEncoder().encode(JSON.stringify({ ...template, requestId }));
      const replied = await nc.request("wasmcloud.policy", payload, { timeout: 2000 });
      expect(
        recordsSeen.some((text) => text.includes(`"requestId":"${requestId}"`)),
        requestId,
      ).toBe(true);
      expect(JSON.parse(decoder.decode(replied.data)).requestId).toBe(requestId);
    }
    spy.unsubscribe();
    const jsm = await jetstreamManager(nc);
    const held = (await jsm.streams.info("ARBITER_DECISIONS")).state.messages;
    const reply = await nc.request("wasmcloud.policy", fixtureBytes("start-provider"), { timeout: 2000 });
    // The stream already holds the answered request's record when the answer arrives.
    expect((await jsm.streams.info("ARBITER_DECISIONS")).state.messages).toBe(held + 1);
    const answer = PolicyResponseV1.parse(JSON.parse(decoder.decode(reply.data)));
    const decisions: DecisionV1[] = [];
    for await (const stored of store.decisions.read({ kind: "startProvider" })) {
      decisions.push(DecisionV1.parse(JSON.parse(stored.text)));
    }
    for await (const stored of store.decisions.read()) {
      const decision = DecisionV1.parse(JSON.parse(stored.text));
      expect(verifySealedJson(stored.text, decision.worker.publicKey), decision.decisionId).toBe(true);
    }
    const last = decisions.at(-1);
    expect(last).toMatchObject({
      requestId: answer.requestId,
      permitted: true,
      message: "signed by wasmCloud",
      decidingRule: "only-wasmcloud-signed",
      revision: 2,
      worker: { id: "w1", publicKey: worker.publicKey },
      cause: "request",
    });
  });

  it("records a burst of requests in batches: each decision on its own line, verifying on its own", async () => {
    const template = fixtureJson("start-component");
    const ids = Array.from({ length: 40 }, (_, i) => `burst-${i}`);
    const payloads = ids.map((requestId, i) =>
      // One of them pretty-printed: its line breaks must not split its record.
      new TextEncoder().encode(JSON.stringify({ ...template, requestId }, null, i === 7 ? 2 : undefined)),
    );
    const replies = await Promise.all(
      payloads.map((payload) => nc.request("wasmcloud.policy", payload, { timeout: 5000 })),
    );
    expect(replies.map((r) => JSON.parse(decoder.decode(r.data)).requestId)).toEqual(ids);

    const store = await openJetStreamStore(nc);
    const found = new Map<string, { seq: number; text: string; decision: DecisionV1 }>();
    for await (const stored of store.decisions.read({ kind: "startComponent" })) {
      const decision = DecisionV1.parse(JSON.parse(stored.text));
      if (ids.includes(decision.requestId)) found.set(decision.requestId, { ...stored, decision });
    }
    expect([...found.keys()].sort()).toEqual([...ids].sort());
    const messages = new Set([...found.values()].map((f) => f.seq));
    expect(messages.size).toBeLessThan(ids.length);
    ids.forEach((id, i) => {
      const { text, decision } = found.get(id)!;
      expect(verifySealedJson(text, worker.publicKey), id).toBe(true);
      expect(decision.request).toEqual(JSON.parse(decoder.decode(payloads[i])));
      // Kept as the very bytes the host sent, unless they had line breaks.
      if (i !== 7) expect(text).toContain(decoder.decode(payloads[i]));
    });
  });

  it("records a burst of large requests within max_payload, answering every one", async () => {
    const template = fixtureJson("start-provider") as { requestId: string; request: Record<string, unknown> };
    const quarter = Math.floor(nc.info!.max_payload / 4);
    const ids = Array.from({ length: 6 }, (_, i) => `large-${i}`);
    const replies = await Promise.all(
      ids.map((requestId) => {
        const request = { ...template.request, annotations: { padding: "p".repeat(quarter) } };
        const payload = new TextEncoder().encode(JSON.stringify({ ...template, requestId, request }));
        return nc.request("wasmcloud.policy", payload, { timeout: 10_000 });
      }),
    );
    for (const [i, reply] of replies.entries()) {
      expect(JSON.parse(decoder.decode(reply.data))).toMatchObject({ requestId: ids[i], permitted: true });
    }
    const store = await openJetStreamStore(nc);
    const seqs = new Map<string, number>();
    for await (const stored of store.decisions.read({ kind: "startProvider" })) {
      const decision = DecisionV1.parse(JSON.parse(stored.text));
      if (ids.includes(decision.requestId)) {
        expect(verifySealedJson(stored.text, worker.publicKey)).toBe(true);
        seqs.set(decision.requestId, stored.seq);
      }
    }
    expect(seqs.size).toBe(ids.length);
    // However the burst arrived, no message holds more than three records of a quarter of max_payload.
    const perMessage = new Map<number, number>();
    for (const seq of seqs.values()) perMessage.set(seq, (perMessage.get(seq) ?? 0) + 1);
    expect(Math.max(...perMessage.values())).toBeLessThanOrEqual(3);
  });

  it("denies bad input that carries a request id, and keeps serving", async () => {
    const bad = new TextEncoder().encode('{"requestId":"bad-1","kind":"startFoo","version":"v1"}');
    const reply = await nc.request("wasmcloud.policy", bad, { timeout: 2000 });
    expect(JSON.parse(decoder.decode(reply.data))).toMatchObject({
      requestId: "bad-1",
      permitted: false,
      message: expect.stringMatching(/unknown kind "startFoo"/),
    });
    const good = await nc.request("wasmcloud.policy", fixtureBytes("perform-invocation"), { timeout: 2000 });
    expect(JSON.parse(decoder.decode(good.data)).permitted).toBe(true);
  });

  it("denies, and records, a valid request too large for its decision record to fit the stream", async () => {
    const request = fixtureJson("start-provider") as {
      requestId: string;
      request: { annotations: Record<string, string> };
    };
    const limit = nc.info!.max_payload;
    request.requestId = "too-large-1";
    request.request.annotations = { padding: "x".repeat(limit - 2048) };
    const bytes = new TextEncoder().encode(JSON.stringify(request));
    expect(bytes.byteLength).toBeLessThan(limit);
    const reply = await nc.request("wasmcloud.policy", bytes, { timeout: 5000 });
    expect(JSON.parse(decoder.decode(reply.data))).toMatchObject({
      requestId: "too-large-1",
      permitted: false,
      message: expect.stringMatching(/too large to record/),
    });
    const store = await openJetStreamStore(nc);
    let recorded: DecisionV1 | undefined;
    for await (const stored of store.decisions.read({ kind: "startProvider" })) {
      const decision = DecisionV1.parse(JSON.parse(stored.text));
      if (decision.requestId === "too-large-1") recorded = decision;
    }
    expect(recorded).toMatchObject({
      permitted: false,
      request: null,
      rejection: expect.stringMatching(/too large/),
    });
  });

  it("denies and records a ~1 MB request with a ~1 MB kind, with the real reason, its fields cut", async () => {
    const limit = nc.info!.max_payload;
    const kind = "k".repeat(limit - 1500);
    const payload = new TextEncoder().encode(
      JSON.stringify({ ...fixtureJson("start-provider"), requestId: "huge-kind-1", kind }),
    );
    expect(payload.byteLength).toBeLessThan(limit);
    const reply = await nc.request("wasmcloud.policy", payload, { timeout: 5000 });
    const answer = PolicyResponseV1.parse(JSON.parse(decoder.decode(reply.data)));
    expect(answer).toMatchObject({ requestId: "huge-kind-1", permitted: false });
    expect(answer.message).not.toMatch(/unavailable|too large to record/);
    const store = await openJetStreamStore(nc);
    let recorded: DecisionV1 | undefined;
    for await (const stored of store.decisions.read()) {
      const decision = DecisionV1.parse(JSON.parse(stored.text));
      if (decision.requestId === "huge-kind-1") recorded = decision;
    }
    expect(recorded).toMatchObject({ permitted: false, message: answer.message, request: null });
    expect(recorded?.kind.length).toBeLessThanOrEqual(257);
    expect(recorded?.truncated).toMatchObject({ kind: kind.length, request: expect.any(Number) });
  });

  it("answers 0.82-format requests (start_actor, perform_invocation) under the same rules", async () => {
    const host = createHostPolicyClient({
      nc,
      lineage: "v0.82",
      changesTopic: null,
      timeoutMs: 5000,
      strictRequestId: true,
      host: {
        publicKey: "NBLSJGGOETB677FQL63PWKDCVMOW4LXVI7S6WXSP55H7L5RNRKUDZKGE",
        lattice: "default",
        labels: {},
      },
    });
    const { source: emptySource, target: wasmCloudSigned, host: legacyHost } = legacyStartActor();
    const signed = await host.evaluateLegacy({
      source: emptySource,
      target: wasmCloudSigned,
      host: legacyHost,
      action: "start_actor",
    });
    expect(signed).toMatchObject({ permitted: true, message: "signed by wasmCloud" });
    const unsigned = await host.evaluateLegacy({
      source: emptySource,
      target: {
        publicKey: "MOTHER",
        issuer: "ADVIWF6Z3BFZNWUXJYT5NEAZZ2YX4T6NRKI3YOR3HKOSQQN7IVDGWSNO",
        contractId: null,
        linkName: null,
      },
      host: legacyHost,
      action: "start_actor",
    });
    expect(unsigned.permitted).toBe(false);
    const invocation = await host.evaluateLegacy({
      source: { ...emptySource, publicKey: "MBFFVNGFK3IA2ZXXG5DQXQNYM6TNG45PHJMJIJFVFI6YKS3XTXL3DRRK" },
      target: {
        publicKey: "VAG3QITQQ2ODAOWB5TTQSDJ53XK3SHBEIFNK4AYJ5RKAX2UNSCAPHA5M",
        issuer: null,
        contractId: "wasmcloud:httpserver",
        linkName: "default",
      },
      host: legacyHost,
      action: "perform_invocation",
    });
    expect(invocation.permitted).toBe(true);
    const store = await openJetStreamStore(nc);
    const legacy: DecisionV1[] = [];
    for await (const stored of store.decisions.read()) {
      const decision = DecisionV1.parse(JSON.parse(stored.text));
      if (decision.lineage === "v0.82") legacy.push(decision);
    }
    expect(legacy.map((d) => [d.kind, d.permitted])).toEqual([
      ["startComponent", true],
      ["startComponent", false],
      ["performInvocation", true],
    ]);
  });
});
