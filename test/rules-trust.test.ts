import { PolicyResponseV1, resourceNames } from "@arbiter/protocol";
import { parseRulesDocument } from "@arbiter/rules";
import { createRulesAdmin, openJetStreamStore, type RulesAdmin } from "@arbiter/store";
import { createSigner, generateKey, signJson } from "@arbiter/trust";
import { createWorker, type Worker } from "@arbiter/worker";
import { jetstream } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectTo, type NatsServerProcess, startNatsServer, until } from "./harness/index.js";
import { exampleRulesText, fixtureBytes } from "./support/fixtures.js";

const names = resourceNames();
const allowAll = { version: 1 as const, default: "allow" as const, rules: [] };

describe("rule events that are not validly signed change nothing", () => {
  let server: NatsServerProcess;
  let nc: NatsConnection;
  let worker: Worker;
  let admin: RulesAdmin;
  const signer = createSigner(generateKey("O").seed);
  const intruder = createSigner(generateKey("O").seed);

  /** Publishes raw text straight onto the rules stream, as anyone with publish rights could. */
  async function publishRaw(text: string): Promise<number> {
    return (await jetstream(nc).publish(names.rulesSubject, text)).seq;
  }

  async function startComponentPermitted(): Promise<boolean> {
    const reply = await nc.request("wasmcloud.policy", fixtureBytes("start-component"), { timeout: 5000 });
    return PolicyResponseV1.parse(JSON.parse(reply.string())).permitted;
  }

  function event(previous: number, extra: Record<string, unknown> = {}) {
    return {
      type: "ruleset.replaced",
      eventId: `e-${previous}`,
      at: new Date().toISOString(),
      actor: signer.publicKey,
      previous,
      payload: { document: allowAll },
      ...extra,
    };
  }

  beforeAll(async () => {
    server = await startNatsServer();
    nc = await connectTo(server.url);
    admin = createRulesAdmin({ store: await openJetStreamStore(nc), signer });
    await admin.apply(parseRulesDocument(exampleRulesText()));
    worker = createWorker({
      nc,
      logger: pino({ level: "silent" }),
      config: { adminKeys: [signer.publicKey] },
    });
    await worker.start();
  });

  afterAll(async () => {
    await worker?.stop();
    await nc?.close();
    await server?.stop();
  });

  it("skips unsigned, foreign-signed, tampered and replayed events and keeps its rules", async () => {
    expect(await startComponentPermitted()).toBe(false);
    const valid = signJson(event(1), signer);
    const forged = [
      JSON.stringify({ ...event(1), signature: "AAAA" }),
      signJson({ ...event(2), actor: intruder.publicKey }, intruder),
      valid.replace('"previous":1', '"previous":3'),
      "not json at all",
      signJson(
        {
          ...event(5),
          payload: {
            document: {
              version: 1,
              default: "allow",
              rules: [{ id: "x", effect: "allow", when: "kind ==" }],
            },
          },
        },
        signer,
      ),
    ];
    for (const text of forged) await publishRaw(text);
    expect(await publishRaw(valid)).toBe(7); // signed for position 2, replayed at 7
    await until(() => worker.revision === 7, { name: "worker consumed revision 7", timeout: 10_000 });
    expect(worker.stats().ruleEventsRejected).toBe(6);
    expect(await startComponentPermitted()).toBe(false);

    const history = await admin.history();
    expect(history.slice(1).map((h) => h.applied)).toEqual([false, false, false, false, false, false]);
    expect(history[1]?.rejection).toMatch(/signature/);
    expect(history[2]?.rejection).toMatch(/not an accepted admin key/);
    expect(history[3]?.rejection).toMatch(/signature .* is not valid/);
    expect(history[4]?.rejection).toMatch(/not a valid rule event/);
    expect(history[5]?.rejection).toMatch(/compile|invalid rules/);
    expect(history[6]?.rejection).toMatch(/replayed/);
  });

  it("applies the next validly signed change", async () => {
    const { revision } = await admin.apply(allowAll, { expectedRevision: 7 });
    expect(revision).toBe(8);
    await until(() => worker.revision === 8, { name: "worker at revision 8", timeout: 10_000 });
    expect(await startComponentPermitted()).toBe(true);
  });

  it("a restarted worker starts from the signed snapshot and agrees", async () => {
    const fresh = createWorker({
      nc,
      logger: pino({ level: "silent" }),
      config: { adminKeys: [signer.publicKey], queueGroup: "other" },
    });
    await fresh.start();
    try {
      expect(fresh.revision).toBe(8);
      expect(fresh.stats().ruleEventsApplied + fresh.stats().ruleEventsRejected).toBe(0);
    } finally {
      await fresh.stop();
    }
  });
});
