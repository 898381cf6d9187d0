import type { HostPolicyClient } from "@arbiter/host";
import { type ArbiterStore, createRulesAdmin, openJetStreamStore, type RulesAdmin } from "@arbiter/store";
import { createSigner, generateKey } from "@arbiter/trust";
import type { NatsConnection } from "@nats-io/nats-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectTo, type NatsServerProcess, startNatsServer, until } from "./harness/index.js";
import { type RunningArbiter, spawnArbiter } from "./support/cli.js";
import {
  applyRules,
  componentBody,
  defaultRules,
  expectEachOverrideRecorded,
  startHost,
  untilRevisionReevaluated,
} from "./support/fanout.js";

// Two `arbiter worker` processes; the one re-evaluating a rules revision is killed with SIGKILL
// once its first overrides are out. The other takes the revision over and every override is sent.

const HOSTS = 10;
const PER_HOST = 60;

let server: NatsServerProcess;
let nc: NatsConnection;
let store: ArbiterStore;
let admin: RulesAdmin;
let adminKey: string;
const workers: RunningArbiter[] = [];
const hosts: HostPolicyClient[] = [];
const connections: NatsConnection[] = [];

beforeAll(async () => {
  server = await startNatsServer();
  nc = await connectTo(server.url);
  store = await openJetStreamStore(nc, { revocationAckWaitMs: 2000 });
  const signer = createSigner(generateKey("O").seed);
  adminKey = signer.publicKey;
  admin = createRulesAdmin({ store, signer });
  await applyRules(admin, defaultRules("deny"));
  const keys = [generateKey("N"), generateKey("N")];
  for (const [i, key] of keys.entries()) {
    const worker = spawnArbiter(["worker", "--name", `w${i}`], {
      NATS_URL: server.url,
      ARBITER_ADMIN_KEYS: adminKey,
      ARBITER_WORKER_SEED: key.seed,
      ARBITER_WORKER_KEYS: keys.map((k) => k.publicKey).join(","),
      ARBITER_LOG_LEVEL: "info",
    });
    workers.push(worker);
  }
  for (const worker of workers) {
    await until(() => /worker ready/.test(worker.stdout() + worker.stderr()), {
      name: "worker ready",
      timeout: 30_000,
    });
  }
}, 60_000);

afterAll(async () => {
  for (const host of hosts) await host.stop();
  for (const worker of workers) await worker.stop();
  for (const c of connections) await c.close();
  await store?.close();
  await nc?.close();
  await server?.stop();
});

describe("re-evaluation when the worker doing it dies", () => {
  it("kill -9 of the worker re-evaluating a revision still ends with every override sent", async () => {
    for (let h = 0; h < HOSTS; h++) {
      const hostNc = await connectTo(server.url);
      connections.push(hostNc);
      hosts.push(await startHost(hostNc));
    }
    await Promise.all(
      hosts.map(async (host, h) => {
        for (let i = 0; i < PER_HOST; i++) await host.evaluateStartComponent(componentBody(`h${h}-c${i}`));
      }),
    );
    const first = new Promise<void>((resolve) => {
      nc.subscribe("wasmcloud.policy.changes", { max: 1, callback: () => resolve() });
    });
    await nc.flush();
    const revision = await applyRules(admin, defaultRules("allow"));
    await first;
    const scans = (w: RunningArbiter, delivery: number) =>
      (w.stdout() + w.stderr())
        .split("\n")
        .some(
          (line) =>
            line.includes("re-evaluating the active index") &&
            line.includes(`"revision":${revision},"delivery":${delivery}`),
        );
    // Its log line may come through its stderr pipe after the override came through NATS.
    const scanning = await until(() => workers.findIndex((w) => scans(w, 1)) + 1, {
      name: "the worker re-evaluating the revision",
    }).then((found) => found - 1);
    const killed = workers[scanning]!;
    const survivor = workers[1 - scanning]!;
    killed.child.kill("SIGKILL");
    await until(() => killed.child.signalCode === "SIGKILL", { name: "the re-evaluating worker gone" });
    await untilRevisionReevaluated(nc, revision, 60_000);
    await until(
      () => hosts.every((host) => [...host.cacheEntries().values()].every((entry) => entry.permitted)),
      { name: "every cached denial permitted", timeout: 30_000, interval: 50 },
    );
    // The survivor got the revision again, after the ack wait.
    expect(scans(survivor, 2)).toBe(true);
    for (const host of hosts) expect(host.cacheEntries().size).toBe(PER_HOST);
    // The chunks the killed worker had written are not recorded again by the survivor's redone
    // scan, unless it cut them otherwise: then an override is there twice, saying the same.
    await expectEachOverrideRecorded(
      nc,
      revision,
      hosts.flatMap((host) => host.sentRequestIds()),
    );
  }, 120_000);
});
