import type { HostPolicyClient } from "@arbiter/host";
import { type ArbiterStore, createRulesAdmin, openJetStreamStore } from "@arbiter/store";
import { createSigner, generateKey } from "@arbiter/trust";
import type { NatsConnection } from "@nats-io/nats-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectTo, type NatsServerProcess, startNatsServer, until } from "./harness/index.js";
import { type RunningArbiter, spawnArbiter } from "./support/cli.js";
import { applyRules, componentBody, defaultRules, startHost, untilIndexCaughtUp } from "./support/fanout.js";

// Two `arbiter worker` processes; the one holding the expiry timer of a cached permit is killed
// with SIGKILL before the claims expire. The timer lives on the server, so the other worker takes
// it when it is due and sends the override.

const EXPIRED = "component claims have expired";

let server: NatsServerProcess;
let nc: NatsConnection;
let store: ArbiterStore;
const workers: RunningArbiter[] = [];
const connections: NatsConnection[] = [];
let client: HostPolicyClient;

beforeAll(async () => {
  server = await startNatsServer();
  nc = await connectTo(server.url);
  store = await openJetStreamStore(nc, { revocationAckWaitMs: 2000 });
  const signer = createSigner(generateKey("O").seed);
  const admin = createRulesAdmin({ store, signer });
  await applyRules(
    admin,
    defaultRules("allow", [
      { id: "no-expired-claims", effect: "deny", when: "claims != null && claims.expired", message: EXPIRED },
    ]),
  );
  const keys = [generateKey("N"), generateKey("N")];
  for (const [i, key] of keys.entries()) {
    workers.push(
      spawnArbiter(["worker", "--name", `w${i}`], {
        NATS_URL: server.url,
        ARBITER_ADMIN_KEYS: signer.publicKey,
        ARBITER_WORKER_SEED: key.seed,
        ARBITER_WORKER_KEYS: keys.map((k) => k.publicKey).join(","),
        ARBITER_LOG_LEVEL: "debug",
      }),
    );
  }
  for (const worker of workers) {
    await until(() => /worker ready/.test(worker.stdout() + worker.stderr()), {
      name: "worker ready",
      timeout: 30_000,
    });
  }
  const hostNc = await connectTo(server.url);
  connections.push(hostNc);
  client = await startHost(hostNc);
}, 60_000);

afterAll(async () => {
  await client?.stop();
  for (const worker of workers) await worker.stop();
  for (const c of connections) await c.close();
  await store?.close();
  await nc?.close();
  await server?.stop();
});

describe("an expiry timer when the worker holding it dies", () => {
  it("kill -9 of the worker holding the timer still ends with the override, sent by the other", async () => {
    const expiresAt = Math.floor(Date.now() / 1000) + 10;
    const claims = {
      publicKey: generateKey("M").publicKey,
      issuer: generateKey("A").publicKey,
      issuedAt: String(expiresAt - 3600),
      expiresAt,
      expired: false,
    };
    const answer = await client.evaluateStartComponent({ ...componentBody("expiring"), claims });
    expect(answer.permitted).toBe(true);
    await untilIndexCaughtUp(nc);
    const logLine = (w: RunningArbiter, text: string) =>
      (w.stdout() + w.stderr())
        .split("\n")
        .some((line) => line.includes(text) && line.includes(`"expiresAt":${expiresAt}`));
    const holding = await until(
      () => workers.findIndex((w) => logLine(w, "holding an expiry timer until it is due")) + 1,
      { name: "the worker holding the timer", timeout: 10_000 },
    ).then((found) => found - 1);
    const killed = workers[holding]!;
    const survivor = workers[1 - holding]!;
    killed.child.kill("SIGKILL");
    await until(() => killed.child.signalCode === "SIGKILL", { name: "the holding worker gone" });
    expect(Date.now()).toBeLessThan(expiresAt * 1000);
    await until(
      () => [...client.cacheEntries().values()].every((e) => !e.permitted && e.message === EXPIRED),
      {
        name: "the cached permit overridden",
        timeout: 30_000,
        interval: 50,
      },
    );
    expect(logLine(survivor, "an expiry timer is due")).toBe(true);
    expect(client.stats().overridesApplied).toBe(1);
  }, 90_000);
});
