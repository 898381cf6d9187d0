import { readFileSync } from "node:fs";
import { Writable } from "node:stream";
import { WORKER_REPLY_PREFIXES } from "@arbiter/embedded-nats";
import { createLatticeHost, type HostPolicyClient, type LatticeHost, latticeEventJson } from "@arbiter/host";
import {
  type ActiveIndex,
  createRulesAdmin,
  openJetStreamActiveIndex,
  openJetStreamStore,
  type RulesAdmin,
} from "@arbiter/store";
import { createSigner, generateKey } from "@arbiter/trust";
import { createWorker, type Worker } from "@arbiter/worker";
import type { NatsConnection } from "@nats-io/nats-core";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectTo, startNatsServer, until } from "./harness/index.js";
import { configuredWorkerKey } from "./support/arbiter.js";
import { applyRules, componentBody, defaultRules, startHost, untilIndexCaughtUp } from "./support/fanout.js";
import {
  operatorUsers,
  passwordUsers,
  type SecuredNats,
  TEST_PASSWORDS,
} from "./support/permission-attacks.js";

// Lattice events are not signed: anyone holding a host credential can publish a host_stopped
// whose source is an honest host's key. Pruning on that alone would stop revocations reaching the
// honest host, which would keep a revoked permit. Under the shipped permissions (hosts in LATTICE,
// workers in ARBITER), workers ping the host first and prune only a host that does not answer.

const ACCOUNTS = readFileSync(new URL("../deploy/nats/accounts.conf", import.meta.url), "utf8");

describeForgedStops("deploy/nats/accounts.conf (password users)", async () => {
  const server = await startNatsServer({ extraConfig: ACCOUNTS, env: { ...TEST_PASSWORDS } });
  return passwordUsers(server.url, () => server.stop());
});

describeForgedStops("the same permissions as JWT users (operator mode)", async () => {
  const operator = operatorUsers();
  const server = await startNatsServer({ extraConfig: operator.config });
  return operator.secured(server.url, () => server.stop());
});

function describeForgedStops(title: string, deploy: () => Promise<SecuredNats>): void {
  let nats: SecuredNats;
  let adminNc: NatsConnection;
  let admin: RulesAdmin;
  let worker: Worker;
  let index: ActiveIndex;
  let honest: HostPolicyClient;
  let honestPresence: LatticeHost;
  let honestKey: string;
  let attackerNc: NatsConnection;
  const logLines: string[] = [];
  const connections: NatsConnection[] = [];

  beforeAll(async () => {
    nats = await deploy();
    adminNc = await connectTo(nats.url, { ...nats.auth("admin"), inboxPrefix: "_INBOX_arbiter_admin" });
    connections.push(adminNc);
    const store = await openJetStreamStore(adminNc);
    const signer = createSigner(generateKey("O").seed);
    admin = createRulesAdmin({ store, signer });
    await applyRules(admin, defaultRules("allow"));
    const workerNc = await connectTo(nats.url, {
      ...nats.auth("worker"),
      inboxPrefix: "_INBOX_arbiter_worker",
    });
    connections.push(workerNc);
    const sink = new Writable({
      write(chunk, _encoding, done) {
        logLines.push(String(chunk));
        done();
      },
    });
    worker = createWorker({
      nc: workerNc,
      logger: pino({ level: "info" }, sink),
      config: {
        adminKeys: [signer.publicKey],
        inboxPrefixes: [...WORKER_REPLY_PREFIXES],
        hostPingWaitMs: 500,
        ...configuredWorkerKey(),
      },
    });
    await worker.start();
    index = await openJetStreamActiveIndex(adminNc, { create: false });
    const hostNc = await connectTo(nats.url, nats.auth("host"));
    connections.push(hostNc);
    honestKey = generateKey("N").publicKey;
    honest = await startHost(hostNc, {}, honestKey);
    honestPresence = createLatticeHost({ nc: hostNc, publicKey: honestKey, lattice: "default" });
    await honestPresence.start();
    attackerNc = await connectTo(nats.url, nats.auth("host"));
    connections.push(attackerNc);
  }, 60_000);

  afterAll(async () => {
    await honest?.stop();
    await honestPresence?.crash().catch(() => {});
    await worker?.stop();
    for (const c of connections) await c.close();
    await nats?.stop();
  });

  async function honestEntries(): Promise<number> {
    let count = 0;
    for await (const _ of index.entries({ lattice: "default", host: honestKey })) count++;
    return count;
  }

  describe(`a forged host_stopped, ${title}`, () => {
    it("leaves a live host's entries, and a revocation still reaches it", async () => {
      const answer = await honest.evaluateStartComponent(componentBody("payments"));
      expect(answer.permitted).toBe(true);
      await untilIndexCaughtUp(adminNc);
      expect(await honestEntries()).toBe(1);
      // The attacker, with a host credential, stops the honest host in the workers' eyes, on both
      // the 1.x and the 0.82 subject.
      const forged = latticeEventJson("host_stopped", honestKey, { labels: {} });
      attackerNc.publish("wasmbus.evt.default.host_stopped", forged);
      attackerNc.publish("wasmbus.evt.default", forged);
      await attackerNc.flush();
      await until(() => logLines.some((line) => line.includes("still answer pings")), {
        name: "the worker refuses the forged stop of a host that answers its ping",
        timeout: 15_000,
      });
      expect(honestPresence.pingsAnswered).toBeGreaterThan(0);
      expect(await honestEntries()).toBe(1);
      // The permit is revoked: the honest host's cache follows.
      await applyRules(admin, defaultRules("deny"));
      await until(() => [...honest.cacheEntries().values()].every((entry) => !entry.permitted), {
        name: "the honest host's cached permit revoked by an override",
        timeout: 30_000,
        interval: 50,
      });
    });

    it("a real stop (the host no longer answers) prunes its entries, across the accounts", async () => {
      expect(await honestEntries()).toBe(1);
      await honestPresence.stop();
      await until(async () => (await honestEntries()) === 0, {
        name: "the stopped host's entries gone",
        timeout: 15_000,
        interval: 50,
      });
      await until(() => logLines.some((line) => line.includes("host pruned from the active index")), {
        name: "the prune logged",
      });
    });
  });
}
