import { DecisionV1, PolicyResponseV1, resourceNames } from "@arbiter/protocol";
import { parseRulesDocument } from "@arbiter/rules";
import {
  createRulesAdmin,
  decisionBatchFromTexts,
  isStoreUnavailableError,
  openJetStreamStore,
} from "@arbiter/store";
import { createSigner, generateKey } from "@arbiter/trust";
import { createWorker, type Worker } from "@arbiter/worker";
import { DiscardPolicy, jetstream, jetstreamManager, StorageType } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import { afterEach, describe, expect, it } from "vitest";
import { connectTo, type NatsServerProcess, startNatsServer, until } from "./harness/index.js";
import { configuredWorkerKey } from "./support/arbiter.js";
import { exampleRulesText, fixtureJson } from "./support/fixtures.js";
import { type CapturedLog, captureLog } from "./support/log-capture.js";

// JetStream refuses a publish with an acknowledgement that carries `error` (and `stream`, and
// `seq: 0`). Each case fills the decision log one way and checks that no request is permitted
// without its record, and that the refusals are counted, logged and visible in the status.

const names = resourceNames();
const encoder = new TextEncoder();

interface Setup {
  readonly server: NatsServerProcess;
  readonly nc: NatsConnection;
  readonly worker: Worker;
  readonly log: CapturedLog;
}

let running: Setup | undefined;

afterEach(async () => {
  await running?.worker.stop();
  await running?.nc.close();
  await running?.server.stop();
  running = undefined;
});

async function setUp(server: NatsServerProcess, auth: { user?: string; pass?: string } = {}): Promise<Setup> {
  const nc = await connectTo(server.url, auth);
  const signer = createSigner(generateKey("O").seed);
  const store = await openJetStreamStore(nc);
  await createRulesAdmin({ store, signer }).apply(parseRulesDocument(exampleRulesText()));
  const log = captureLog();
  const worker = createWorker({
    nc,
    logger: log.logger,
    config: { adminKeys: [signer.publicKey], ackTimeoutMs: 1000, ...configuredWorkerKey() },
  });
  await worker.start();
  running = { server, nc, worker, log };
  return running;
}

/** Sends requests that the example rules permit; returns the ids of those answered `permitted: true`. */
async function askPermitted(nc: NatsConnection, prefix: string, count: number): Promise<string[]> {
  const template = fixtureJson("start-provider");
  const outcomes = await Promise.allSettled(
    Array.from({ length: count }, (_, i) =>
      nc.request(
        "wasmcloud.policy",
        encoder.encode(JSON.stringify({ ...template, requestId: `${prefix}-${i}` })),
        {
          timeout: 1500,
        },
      ),
    ),
  );
  const permitted: string[] = [];
  for (const outcome of outcomes) {
    if (outcome.status !== "fulfilled") continue;
    const answer = PolicyResponseV1.parse(JSON.parse(outcome.value.string()));
    if (answer.permitted) permitted.push(answer.requestId);
  }
  return permitted;
}

async function recordedRequestIds(nc: NatsConnection): Promise<Set<string>> {
  const store = await openJetStreamStore(nc, { create: false });
  const ids = new Set<string>();
  for await (const stored of store.decisions.read()) {
    const parsed = DecisionV1.safeParse(JSON.parse(stored.text));
    if (parsed.success) ids.add(parsed.data.requestId);
  }
  return ids;
}

/** Asks while the log refuses, then checks the answers, the counters, the status and the log. */
async function expectNoAnswerWithoutRecord(setup: Setup, errCode: RegExp): Promise<void> {
  const permitted = await askPermitted(setup.nc, "refused", 20);
  const recorded = await recordedRequestIds(setup.nc);
  for (const id of permitted) expect(recorded.has(id), `${id} answered without its record`).toBe(true);
  expect(permitted).toEqual([]);
  expect(setup.worker.stats().logFailures).toBeGreaterThan(0);
  expect(setup.worker.stats().decisions).toBe(1);
  expect(setup.worker.health).toMatchObject({ state: "degraded", reason: expect.stringMatching(errCode) });
  await until(
    () =>
      setup.log
        .lines()
        .some((l) => /decision log unavailable/.test(String(l["msg"])) && Number(l["requests"]) > 0),
    { name: "the refusals logged" },
  );
}

describe("a decision log that refuses what it is sent", () => {
  it("is not taken for a record when the stream has reached max_msgs with discard: new", async () => {
    const setup = await setUp(await startNatsServer());
    expect(await askPermitted(setup.nc, "before", 1)).toEqual(["before-0"]);
    const jsm = await jetstreamManager(setup.nc);
    const info = await jsm.streams.info(names.decisionsStream);
    await jsm.streams.update(names.decisionsStream, {
      ...info.config,
      max_msgs: info.state.messages,
      discard: DiscardPolicy.New,
    });
    await expectNoAnswerWithoutRecord(setup, /err_code 10077/);
    // The store's own error names the refusal by JetStream's code.
    const store = await openJetStreamStore(setup.nc, { create: false });
    const refused = await store.decisions
      .append(
        decisionBatchFromTexts(
          [{ decisionId: "direct-1", text: '{"n":1}' }],
          createSigner(generateKey("N").seed),
        ),
      )
      .then(
        () => null,
        (err: unknown) => err,
      );
    expect(isStoreUnavailableError(refused)).toBe(true);
    expect(refused).toMatchObject({ code: "STORE_UNAVAILABLE", jsErrCode: 10077 });
    await store.close();
  });

  it("an operator's decision stream made with discard: new and max_msgs: once full, the host gets no answer and the worker logs why", async () => {
    const server = await startNatsServer();
    const operator = await connectTo(server.url);
    // Made before Arbiter's admin ran, as with `nats stream add`: the admin's store leaves it as it is.
    await (await jetstreamManager(operator)).streams.add({
      name: names.decisionsStream,
      subjects: [names.decisionsSubjects],
      storage: StorageType.File,
      discard: DiscardPolicy.New,
      max_msgs: 1,
    });
    await operator.close();
    const setup = await setUp(server);
    expect(await askPermitted(setup.nc, "before", 1)).toEqual(["before-0"]);
    const template = fixtureJson("start-provider");
    await expect(
      setup.nc.request(
        "wasmcloud.policy",
        encoder.encode(JSON.stringify({ ...template, requestId: "full-0" })),
        {
          timeout: 1500,
        },
      ),
    ).rejects.toThrow(/timeout/i);
    expect(await recordedRequestIds(setup.nc)).toEqual(new Set(["before-0"]));
    await expectNoAnswerWithoutRecord(setup, /err_code 10077/);
  });

  it("is not taken for a record when the stream has reached max_bytes with discard: new", async () => {
    const setup = await setUp(await startNatsServer());
    expect(await askPermitted(setup.nc, "before", 1)).toEqual(["before-0"]);
    const jsm = await jetstreamManager(setup.nc);
    const info = await jsm.streams.info(names.decisionsStream);
    await jsm.streams.update(names.decisionsStream, {
      ...info.config,
      max_bytes: info.state.bytes,
      discard: DiscardPolicy.New,
    });
    await expectNoAnswerWithoutRecord(setup, /JetStream refused the message/);
  });

  it("is not taken for a record when the account's JetStream storage is exhausted", async () => {
    const server = await startNatsServer({
      extraConfig: `accounts: { ARBITER: { jetstream: { max_file: 4M, max_mem: 1M }, users: [{ user: arbiter, password: arbiter }] } }`,
    });
    const setup = await setUp(server, { user: "arbiter", pass: "arbiter" });
    expect(await askPermitted(setup.nc, "before", 1)).toEqual(["before-0"]);
    const jsm = await jetstreamManager(setup.nc);
    await jsm.streams.add({ name: "FILLER", subjects: ["filler"], storage: StorageType.File });
    const js = jetstream(setup.nc);
    // Large blocks first, then ever smaller ones, until not even a small record fits.
    for (const size of [256 * 1024, 16 * 1024, 1024, 64]) {
      const block = new Uint8Array(size);
      await until(
        async () => {
          try {
            await js.publish("filler", block);
            return false;
          } catch {
            return true;
          }
        },
        { name: `the account's storage full for ${size} bytes`, interval: 1, timeout: 30_000 },
      );
    }
    await expectNoAnswerWithoutRecord(setup, /JetStream refused the message/);
  });
});
