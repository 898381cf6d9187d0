import { resourceNames } from "@arbiter/protocol";
import {
  BATCH_CAUSE_HEADER,
  BATCH_SIGNATURE_HEADER,
  decisionBatchFromTexts,
  openJetStreamActiveIndex,
  REEVALUATION_BATCH_CAUSE,
} from "@arbiter/store";
import { createSigner, generateKey, splitSealedJson, verifyBatch } from "@arbiter/trust";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { headers } from "@nats-io/nats-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { until } from "./harness/index.js";
import { enrolledWorkerSeed } from "./support/arbiter.js";
import { runArbiter } from "./support/cli.js";
import {
  applyRules,
  componentBody,
  defaultRules,
  untilIndexCaughtUp,
  untilRevisionReevaluated,
} from "./support/fanout.js";
import { type FanoutArbiter, startFanoutArbiter } from "./support/fanout-setup.js";

// The re-evaluation's decisions are stored as batches on a subject of their own, in the same
// stream, and say so in a header: the active index's projection (which never indexes a
// re-evaluation) is not delivered them; the revoker puts the changed entries itself.

const names = resourceNames();

let arbiter: FanoutArbiter;

beforeAll(async () => {
  arbiter = await startFanoutArbiter({ workers: ["w1"] });
}, 60_000);

afterAll(async () => {
  await arbiter?.close();
});

describe("re-evaluation batches", () => {
  it("are stored on their own subject and marked as re-evaluations, the request batches not, and the index holds the new outcomes", async () => {
    const host = await arbiter.startHost();
    for (let i = 0; i < 5; i++) {
      expect((await host.evaluateStartComponent(componentBody(`c${i}`))).permitted).toBe(false);
    }
    await untilIndexCaughtUp(arbiter.nc);
    const revision = await applyRules(arbiter.admin, defaultRules("allow"));
    await untilRevisionReevaluated(arbiter.nc, revision);
    await until(() => [...host.cacheEntries().values()].every((e) => e.permitted), {
      name: "every cached denial permitted",
      timeout: 30_000,
      interval: 50,
    });

    const jsm = await jetstreamManager(arbiter.nc);
    const last = (await jsm.streams.info(names.decisionsStream)).state.last_seq;
    const causes = { request: 0, reevaluation: 0, marked: 0, unmarked: 0 };
    for (let seq = 1; seq <= last; seq++) {
      const message = await jsm.streams.getMessage(names.decisionsStream, { seq });
      if (message === null) throw new Error(`decision message ${seq} is not there`);
      const lines = message.string().split("\n");
      const kinds = new Set(lines.map((line) => (JSON.parse(line) as { cause: string }).cause));
      expect(kinds.size).toBe(1);
      const marked = message.header.get(BATCH_CAUSE_HEADER) === REEVALUATION_BATCH_CAUSE;
      if (kinds.has("reevaluation")) {
        causes.reevaluation += lines.length;
        expect(marked).toBe(true);
        expect(message.subject).toBe(names.reevaluationsSubject);
        causes.marked++;
      } else {
        causes.request += lines.length;
        expect(message.header.get(BATCH_CAUSE_HEADER)).toBe("");
        expect(message.subject).toBe(names.decisionsSubject);
        causes.unmarked++;
      }
    }
    expect(causes.request).toBe(5);
    expect(causes.reevaluation).toBe(5);
    expect(causes.marked).toBeGreaterThan(0);

    const index = await openJetStreamActiveIndex(arbiter.nc, { create: false });
    try {
      let entries = 0;
      for await (const entry of index.entries()) {
        entries++;
        expect(entry).toMatchObject({ permitted: true, revision });
      }
      expect(entries).toBe(5);
    } finally {
      await index.close();
    }
  }, 60_000);
  it("are not delivered to the projection, and a scan right after one, the last decision message, does not wait for it", async () => {
    const jsm = await jetstreamManager(arbiter.nc);
    const { state } = await jsm.streams.info(names.decisionsStream);
    const last = await jsm.streams.getMessage(names.decisionsStream, { seq: state.last_seq });
    expect(last?.subject).toBe(names.reevaluationsSubject);
    const consumer = await jsm.consumers.info(names.decisionsStream, names.activeIndexConsumer);
    expect(consumer.config.filter_subject).toBe(names.decisionsSubject);
    expect(consumer.ack_floor.stream_seq).toBeLessThan(state.last_seq);
    expect(consumer.num_pending + consumer.num_ack_pending).toBe(0);

    // Waiting for an ack floor that never reaches the stream's end would hold the scan until its
    // catch-up timeout (a minute), and again at each redelivery.
    const revision = await applyRules(arbiter.admin, defaultRules("deny"));
    await untilRevisionReevaluated(arbiter.nc, revision, 20_000);
    const host = await arbiter.startHost();
    expect((await host.evaluateStartComponent(componentBody("after"))).permitted).toBe(false);
  }, 60_000);

  it("a batch stored on their subject without their header, signed by an enrolled key, is never indexed", async () => {
    // Whoever may publish there (a worker's credentials) copies a request's batch there: the
    // projection is not delivered it, whatever its header says. The same batch on the requests'
    // subject is indexed, so it would have been.
    const hostKey = generateKey("N").publicKey;
    const host = await arbiter.startHost({}, hostKey);
    await host.evaluateStartComponent(componentBody("genuine"));
    await untilIndexCaughtUp(arbiter.nc);
    let genuine: Record<string, unknown> | undefined;
    for await (const stored of arbiter.store.decisions.read({ host: hostKey })) {
      genuine = JSON.parse(splitSealedJson(stored.text)!.body) as Record<string, unknown>;
    }
    const forger = createSigner(await enrolledWorkerSeed(arbiter.admin, "forger"));
    const jsm = await jetstreamManager(arbiter.nc);
    const revision = (await jsm.streams.info(names.rulesStream)).state.last_seq;
    await arbiter.workers[0]!.waitForRevision(revision);
    const publish = async (subject: string, name: string, decisionId: string) => {
      const record = {
        ...genuine,
        decisionId,
        requestId: `forged-${name}`,
        cacheKey: `startComponent:${name}_ghcr.io/example/${name}:0.1.0`,
        revision,
        worker: { id: "forger", publicKey: forger.publicKey },
      };
      const batch = decisionBatchFromTexts([{ decisionId, text: JSON.stringify(record) }], forger);
      const h = headers();
      h.set(BATCH_SIGNATURE_HEADER, batch.signature);
      await jetstream(arbiter.nc).publish(subject, batch.lines, { headers: h, msgID: decisionId });
      return { lattice: "default", host: hostKey, cacheKey: record.cacheKey };
    };
    const hidden = await publish(names.reevaluationsSubject, "hidden", "01HIDDENHIDDENHIDDENHIDDEN");
    const control = await publish(names.decisionsSubject, "control", "01CONTROLCONTROLCONTROLCON");
    await untilIndexCaughtUp(arbiter.nc);
    const index = await openJetStreamActiveIndex(arbiter.nc, { create: false });
    try {
      expect(await index.get(control)).toMatchObject({ requestId: "forged-control" });
      expect(await index.get(hidden)).toBeNull();
    } finally {
      await index.close();
    }
  }, 60_000);

  it("of a large scan, hashed off the scan's thread, verify one by one and in audit verify, and replay alike", async () => {
    // Batches of 64 records and more are hashed on the worker's hashing thread: their signatures
    // must be what the records' own Merkle tree gives, the root anyone checking the log computes.
    await applyRules(arbiter.admin, defaultRules("deny"));
    const hostKey = generateKey("N").publicKey;
    const host = await arbiter.startHost({}, hostKey);
    for (let i = 0; i < 200; i++) await host.evaluateStartComponent(componentBody(`large-${i}`));
    await untilIndexCaughtUp(arbiter.nc);
    const jsm = await jetstreamManager(arbiter.nc);
    const before = (await jsm.streams.info(names.decisionsStream)).state.last_seq;
    const revision = await applyRules(arbiter.admin, defaultRules("allow"));
    await untilRevisionReevaluated(arbiter.nc, revision);
    await until(() => [...host.cacheEntries().values()].every((e) => e.permitted), {
      name: "every cached denial of the large scan permitted",
      timeout: 30_000,
      interval: 50,
    });

    const last = (await jsm.streams.info(names.decisionsStream)).state.last_seq;
    let records = 0;
    let largest = 0;
    for (let seq = before + 1; seq <= last; seq++) {
      const message = await jsm.streams.getMessage(names.decisionsStream, { seq });
      if (message?.subject !== names.reevaluationsSubject) continue;
      const bodies = Buffer.from(message.data)
        .toString()
        .split("\n")
        .map((line) => Buffer.from(line));
      const key = (JSON.parse(bodies[0]!.toString()) as { worker: { publicKey: string } }).worker.publicKey;
      expect(verifyBatch(bodies, message.header.get(BATCH_SIGNATURE_HEADER), key), `batch ${seq}`).toBe(true);
      records += bodies.length;
      largest = Math.max(largest, bodies.length);
    }
    // With the denials the other tests left cached.
    expect(records).toBeGreaterThanOrEqual(200);
    expect(largest).toBeGreaterThanOrEqual(64);

    const env = {
      NATS_URL: arbiter.server.url,
      ARBITER_ADMIN_SEED: "",
      ARBITER_ADMIN_KEYS: arbiter.signer.publicKey,
      ARBITER_HOME: "/nonexistent-arbiter-home",
      ARBITER_LOG_LEVEL: "warn",
    };
    const verified = await runArbiter(["audit", "verify", "--json"], env);
    expect(verified.code, verified.stderr).toBe(0);
    expect(JSON.parse(verified.stdout)).toMatchObject({ valid: true, decisions: { failed: 0 } });
    // This host's records only: the forged copies of the test before replay as what they are.
    const replayed = await runArbiter(
      ["audit", "replay", "--servers", arbiter.server.url, "--host", hostKey, "--json"],
      env,
    );
    expect(replayed.code, replayed.stderr).toBe(0);
    expect(JSON.parse(replayed.stdout)).toMatchObject({ decisions: 400, mismatches: 0 });
  }, 120_000);
});
