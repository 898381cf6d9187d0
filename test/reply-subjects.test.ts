import { DecisionV1, PolicyResponseV1, resourceNames, WorkerStatusV1 } from "@arbiter/protocol";
import { parseRulesDocument } from "@arbiter/rules";
import { createRulesAdmin, openJetStreamStore } from "@arbiter/store";
import { createSigner, generateKey } from "@arbiter/trust";
import { createWorker, type Worker } from "@arbiter/worker";
import { jetstreamManager } from "@nats-io/jetstream";
import { createInbox, type Msg, type NatsConnection } from "@nats-io/nats-core";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectTo, type NatsServerProcess, startNatsServer, until } from "./harness/index.js";
import { configuredWorkerKey } from "./support/arbiter.js";
import { exampleRulesText, fixtureBytes, fixtureJson } from "./support/fixtures.js";
import { captureLog } from "./support/log-capture.js";

const names = resourceNames();
const encoder = new TextEncoder();

function providerRequest(requestId: string): Uint8Array {
  return encoder.encode(JSON.stringify({ ...fixtureJson("start-provider"), requestId }));
}

describe("reply subjects the worker answers to", () => {
  let server: NatsServerProcess;
  let nc: NatsConnection;
  let worker: Worker;
  let custom: Worker;
  const log = captureLog();

  beforeAll(async () => {
    server = await startNatsServer();
    nc = await connectTo(server.url);
    const signer = createSigner(generateKey("O").seed);
    await createRulesAdmin({ store: await openJetStreamStore(nc), signer }).apply(
      parseRulesDocument(exampleRulesText()),
    );
    worker = createWorker({
      nc,
      logger: log.logger,
      config: { id: "inboxes", adminKeys: [signer.publicKey], ...configuredWorkerKey() },
    });
    await worker.start();
    custom = createWorker({
      nc,
      logger: pino({ level: "silent" }),
      config: {
        id: "custom-inboxes",
        adminKeys: [signer.publicKey],
        ...configuredWorkerKey(),
        policyTopic: "custom.policy",
        inboxPrefixes: ["myapp.replies."],
      },
    });
    await custom.start();
  });

  afterAll(async () => {
    await custom?.stop();
    await worker?.stop();
    await nc?.close();
    await server?.stop();
  });

  /** Publishes a request with `reply` and waits until the worker has recorded its refusal. */
  async function sendRefused(reply: string, requestId: string): Promise<void> {
    const before = worker.stats().refusedReply;
    nc.publish("wasmcloud.policy", providerRequest(requestId), { reply });
    await until(() => worker.stats().refusedReply === before + 1, { name: `the refusal of ${reply}` });
    await until(async () => (await recorded()).some((d) => d.requestId === requestId), {
      name: `the refusal of ${requestId} recorded`,
    });
  }

  async function recorded(): Promise<DecisionV1[]> {
    const store = await openJetStreamStore(nc, { create: false });
    const decisions: DecisionV1[] = [];
    for await (const stored of store.decisions.read())
      decisions.push(DecisionV1.parse(JSON.parse(stored.text)));
    return decisions;
  }

  it("answers a reply subject under _INBOX.", async () => {
    const inbox = `_INBOX.${createInbox().slice("_INBOX.".length)}`;
    const sub = nc.subscribe(inbox, { max: 1 });
    nc.publish("wasmcloud.policy", providerRequest("inbox-1"), { reply: inbox });
    for await (const msg of sub) {
      expect(PolicyResponseV1.parse(JSON.parse(msg.string()))).toMatchObject({
        requestId: "inbox-1",
        permitted: true,
      });
    }
  });

  it("never answers on the changes topic: no host there hears anything, and the refusal is recorded", async () => {
    const heard: Msg[] = [];
    const changes = nc.subscribe("wasmcloud.policy.changes", {
      callback: (_err, msg) => {
        heard.push(msg);
      },
    });
    await sendRefused("wasmcloud.policy.changes", "changes-1");
    await nc.flush();
    expect(heard).toEqual([]);
    changes.unsubscribe();
    const refusal = (await recorded()).find((d) => d.requestId === "changes-1");
    expect(refusal).toMatchObject({
      permitted: false,
      rejection: expect.stringMatching(/not an inbox/),
      request: { requestId: "changes-1", kind: "startProvider" },
    });
  });

  it("never answers into Arbiter's decision stream: every stored message stays a decision batch", async () => {
    const jsm = await jetstreamManager(nc);
    await sendRefused(names.decisionsSubject, "decisions-1");
    await sendRefused("arbiter.anything.else", "arbiter-1");
    const store = await openJetStreamStore(nc, { create: false });
    for await (const stored of store.decisions.read()) {
      expect(DecisionV1.safeParse(JSON.parse(stored.text)).success, stored.text.slice(0, 200)).toBe(true);
    }
    expect((await jsm.streams.info(names.decisionsStream)).state.messages).toBeGreaterThan(0);
    expect(worker.stats().refusedReply).toBe(3);
    await until(
      () =>
        log.lines().reduce((sum, l) => sum + (typeof l["refused"] === "number" ? l["refused"] : 0), 0) === 3,
      { name: "every refusal logged with its count", timeout: 5000 },
    );
  });

  it("never answers on a host's own changes subject, where a host of per-host overrides listens", async () => {
    const victim = generateKey("N").publicKey;
    const heard: Msg[] = [];
    const changes = nc.subscribe("wasmcloud.policy.changes.*", {
      callback: (_err, msg) => {
        heard.push(msg);
      },
    });
    await sendRefused(`wasmcloud.policy.changes.${victim}`, "changes-2");
    await nc.flush();
    expect(heard).toEqual([]);
    changes.unsubscribe();
    expect((await recorded()).find((d) => d.requestId === "changes-2")).toMatchObject({
      permitted: false,
      rejection: expect.stringMatching(/not an inbox/),
    });
  });

  it("answers a configured custom inbox prefix, and then no longer _INBOX.", async () => {
    const reply = "myapp.replies.abc";
    const sub = nc.subscribe(reply, { max: 1 });
    nc.publish("custom.policy", providerRequest("custom-1"), { reply });
    for await (const msg of sub) {
      expect(PolicyResponseV1.parse(JSON.parse(msg.string()))).toMatchObject({
        requestId: "custom-1",
        permitted: true,
      });
    }
    await expect(
      nc.request("custom.policy", fixtureBytes("start-provider"), { timeout: 500 }),
    ).rejects.toThrow();
    await until(() => custom.stats().refusedReply === 1, {
      name: "the _INBOX. request refused by the custom worker",
    });
  });

  it("answers status requests with its WorkerStatusV1, on inbox subjects only", async () => {
    const answers: WorkerStatusV1[] = [];
    const inbox = createInbox();
    const sub = nc.subscribe(inbox, {
      callback: (_err, msg) => {
        answers.push(WorkerStatusV1.parse(JSON.parse(msg.string())));
      },
    });
    nc.publish(names.statusSubject, new Uint8Array(), { reply: inbox });
    const customSub = nc.subscribe(`myapp.replies.${inbox}`, {
      callback: (_err, msg) => {
        answers.push(WorkerStatusV1.parse(JSON.parse(msg.string())));
      },
    });
    nc.publish(names.statusSubject, new Uint8Array(), { reply: `myapp.replies.${inbox}` });
    // Each worker answers on its own inbox prefixes only: the default one on _INBOX., the custom one on myapp.replies.
    await until(() => answers.length === 2, { name: "both workers status" });
    expect(answers.filter((a) => a.id === "custom-inboxes")).toHaveLength(1);
    customSub.unsubscribe();
    const mine = answers.find((a) => a.id === "inboxes");
    expect(mine).toMatchObject({
      publicKey: worker.publicKey,
      state: "ready",
      reason: null,
      revision: 2,
      stats: expect.objectContaining({ refusedReply: expect.any(Number) }),
    });
    expect(mine?.adminKeys).toHaveLength(1);
    sub.unsubscribe();

    const heard: Msg[] = [];
    const changes = nc.subscribe("wasmcloud.policy.changes", {
      callback: (_err, msg) => {
        heard.push(msg);
      },
    });
    nc.publish(names.statusSubject, new Uint8Array(), { reply: "wasmcloud.policy.changes" });
    await nc.flush();
    // The status request is handled synchronously on arrival; one more round trip covers it.
    await nc.request(names.statusSubject, new Uint8Array(), { timeout: 2000 });
    await nc.flush();
    expect(heard).toEqual([]);
    changes.unsubscribe();
  });
});
