import { PolicyResponseV1, resourceNames } from "@arbiter/protocol";
import { parseRulesDocument } from "@arbiter/rules";
import { createSigner, generateKey } from "@arbiter/trust";
import { createWorker, type Worker } from "@arbiter/worker";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/nats-core";
import { pino } from "pino";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { until } from "./harness/index.js";
import { enrolledWorkerSeed } from "./support/arbiter.js";
import { runArbiter } from "./support/cli.js";
import { type FanoutArbiter, startFanoutArbiter } from "./support/fanout-setup.js";
import { exampleRulesText, fixtureBytes } from "./support/fixtures.js";
import { type CapturedLog, captureLog } from "./support/log-capture.js";

// The attacker holds signed records of another deployment (staging, signed by the same admin key)
// or older signed records of this one, and can write to the rules stream and bucket. Before rule
// events named their deployment and chained by hash, a staging allow-all snapshot or event copied
// into production was applied, and a refilled stream was followed.

const names = resourceNames();
const allowAll = { version: 1 as const, default: "allow" as const, rules: [] };
const exampleRules = () => parseRulesDocument(exampleRulesText());
const adminSeed = generateKey("O").seed;
const admin = createSigner(adminSeed);
const silent = pino({ level: "silent" });

/** A deployment of its own: server, store and the first rules, signed by the one admin key; no worker yet. */
const deployment = (document: typeof allowAll | ReturnType<typeof exampleRules>): Promise<FanoutArbiter> =>
  startFanoutArbiter({ adminSeed, rules: document, workers: [], workerConfig: { chainCheckMs: 100 } });

async function permitsStart(nc: NatsConnection): Promise<boolean> {
  const reply = await nc.request("wasmcloud.policy", fixtureBytes("start-component"), { timeout: 5000 });
  return PolicyResponseV1.parse(JSON.parse(reply.string())).permitted;
}

/** Every stored rule event of a deployment, as the attacker would copy them. */
async function eventTexts(d: FanoutArbiter): Promise<string[]> {
  const texts: string[] = [];
  for await (const e of d.store.rules.read()) texts.push(e.text);
  return texts;
}

async function snapshotText(d: FanoutArbiter): Promise<string> {
  return (await d.store.snapshots.load())!;
}

describe("rule history copied from another deployment", () => {
  let production: FanoutArbiter;
  let staging: FanoutArbiter;
  let worker: Worker | undefined;

  beforeAll(async () => {
    production = await deployment(exampleRules());
    // Staging runs with everything allowed and has a longer history than production.
    staging = await deployment(allowAll);
    for (let i = 0; i < 6; i++) await staging.admin.apply(allowAll);
  });

  afterEach(async () => {
    await worker?.stop();
    worker = undefined;
  });

  afterAll(async () => {
    await production?.close();
    await staging?.close();
  });

  it("a staging snapshot copied into production's bucket is refused by a starting worker, which reads production's history", async () => {
    const workerSeed = await enrolledWorkerSeed(production.admin);
    const stolen = await snapshotText(staging);
    const own = await snapshotText(production);
    const kv = await new Kvm(production.nc).open(names.rulesBucket);
    await kv.put("snapshot", stolen);
    try {
      const log = captureLog();
      worker = await production.startWorker("snapshot-refused", { logger: log.logger, seed: workerSeed });
      expect(await permitsStart(production.nc)).toBe(false);
      expect(worker.health).toEqual({
        state: "degraded",
        reason: expect.stringMatching(
          new RegExp(`snapshot was refused: the snapshot belongs to deployment ${staging.deployment}`),
        ),
      });
      expect(worker.stats().snapshotsRefused).toBe(1);
      expect(
        log.lines().some((l) => l["msg"] === "refusing the rules snapshot; reading the whole history"),
      ).toBe(true);
    } finally {
      await kv.put("snapshot", own);
    }
  });

  it("a staging event copied onto production's stream is refused: the worker keeps its rules, degraded, and rules history shows the break", async () => {
    const log = captureLog();
    worker = await production.startWorker("copied-event", { logger: log.logger });
    const before = worker.revision;
    expect(worker.health.state).toBe("ready");
    const js = jetstream(production.nc);
    // Staging's revision after production's last: its number fits, only its deployment does not.
    const copied = (await eventTexts(staging))[before]!;
    const { seq } = await js.publish(names.rulesSubject, copied);
    expect(seq).toBe(before + 1);

    await until(() => worker!.stats().chainBreaks === 1, {
      name: "the copied event breaks the chain",
      timeout: 10_000,
    });
    expect(worker.revision).toBe(before);
    expect(await permitsStart(production.nc)).toBe(false);
    expect(worker.health).toEqual({
      state: "degraded",
      reason: expect.stringMatching(
        new RegExp(
          `stops chaining at revision ${seq} \\(the event belongs to deployment ${staging.deployment}`,
        ),
      ),
    });
    expect(log.lines().some((l) => String(l["msg"]).startsWith("the rules history does not chain"))).toBe(
      true,
    );

    const history = await runArbiter(["rules", "history", "--json"], { NATS_URL: production.server.url });
    expect(history.code, history.stderr).toBe(0);
    const entries = JSON.parse(history.stdout) as {
      revision: number;
      broken: string | null;
      hash: string;
      prev: string | null;
    }[];
    expect(entries.map((e) => e.broken !== null)).toEqual(entries.map((e) => e.revision === seq));
    expect(entries.at(-1)?.broken).toMatch(/another deployment/);
    const text = await runArbiter(["rules", "history"], { NATS_URL: production.server.url });
    expect(text.stdout).toMatch(new RegExp(`\\s${seq}\\s+BROKEN\\s+ruleset.replaced`));
    expect(text.stdout).toMatch(/the chain breaks here: the event belongs to deployment/);

    // Nothing more is written on a history that does not chain.
    await expect(production.admin.apply(allowAll)).rejects.toMatchObject({ code: "CHAIN_BROKEN" });
  });

  it("a fresh worker pinned to production refuses to start on staging's stream", async () => {
    const pinned = createWorker({
      nc: staging.nc,
      logger: silent,
      config: {
        adminKeys: [admin.publicKey],
        deployment: production.deployment,
        workerSeed: await enrolledWorkerSeed(staging.admin),
      },
    });
    await expect(pinned.start()).rejects.toMatchObject({
      code: "INVALID_CONFIG",
      message: expect.stringMatching(
        new RegExp(
          `pinned to deployment ${production.deployment}.*belongs to deployment ${staging.deployment}`,
        ),
      ),
    });
    expect(pinned.status).toBe("stopped");
  });
});

describe("a rules stream deleted and refilled", () => {
  let production: FanoutArbiter;
  let worker: Worker | undefined;
  let log: CapturedLog;
  let spareSeed: string;

  beforeEach(async () => {
    // History: 1 genesis, 2 allow everything, 3 the example rules (no unsigned starts), 4 and 5 worker keys.
    production = await deployment(allowAll);
    await production.admin.apply(exampleRules());
    log = captureLog();
    worker = await production.startWorker("w1", { logger: log.logger });
    spareSeed = await enrolledWorkerSeed(production.admin);
    await worker.waitForRevision(5, 10_000);
    expect(worker.revision).toBe(5);
    expect(await permitsStart(production.nc)).toBe(false);
  });

  afterEach(async () => {
    await worker?.stop();
    await production?.close();
  });

  async function deleteAndRefill(texts: readonly string[]): Promise<void> {
    const jsm = await jetstreamManager(production.nc);
    const config = (await jsm.streams.info(names.rulesStream)).config;
    await jsm.streams.delete(names.rulesStream);
    await jsm.streams.add(config);
    const js = jetstream(production.nc);
    for (const text of texts) await js.publish(names.rulesSubject, text);
  }

  it("with older signed events: running workers keep the last good rules, report degraded and do not roll back", async () => {
    const texts = await eventTexts(production);
    await deleteAndRefill(texts.slice(0, 2));
    await until(() => worker!.stats().chainBreaks === 1, { name: "the refill is noticed", timeout: 15_000 });
    expect(worker!.revision).toBe(5);
    expect(await permitsStart(production.nc)).toBe(false);
    expect(worker!.health).toEqual({
      state: "degraded",
      reason: expect.stringMatching(/no longer has revision 5.*deleted and refilled/),
    });
    // The admin writes nothing onto it: the snapshot names a head the stream does not have.
    await expect(production.admin.apply(allowAll)).rejects.toMatchObject({
      code: "CHAIN_BROKEN",
      message: expect.stringMatching(/deleted and refilled/),
    });
    // The original events appended again as they were change nothing for the running worker.
    await production.store.rules.append(texts[2]!, 2);
    expect(worker!.revision).toBe(5);
    expect(await permitsStart(production.nc)).toBe(false);

    // A worker started now takes the signed snapshot of revision 5 as the last good rules.
    const restarted = await production.startWorker("restarted", {
      seed: spareSeed,
      config: { queueGroup: "restarted" },
    });
    try {
      expect(restarted.revision).toBe(5);
      expect(restarted.health.reason).toMatch(/snapshot names revision 5 .*deleted and refilled/);
      expect(restarted.stats().chainBreaks).toBe(1);
    } finally {
      await restarted.stop();
    }
  });

  it("with another deployment's history: running workers keep their rules and report degraded", async () => {
    const other = await deployment(allowAll);
    try {
      await other.admin.apply(allowAll);
      await other.admin.apply(allowAll);
      await other.admin.apply(allowAll);
      await deleteAndRefill(await eventTexts(other));
      await until(() => worker!.stats().chainBreaks === 1, {
        name: "the foreign refill is noticed",
        timeout: 15_000,
      });
      expect(worker!.revision).toBe(5);
      expect(await permitsStart(production.nc)).toBe(false);
      expect(worker!.health.state).toBe("degraded");
      expect(log.lines().some((l) => String(l["msg"]).startsWith("the rules history does not chain"))).toBe(
        true,
      );
    } finally {
      await other.close();
    }
  });
});
