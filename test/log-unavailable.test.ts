import { createHostPolicyClient } from "@arbiter/host";
import { resourceNames, type StartProviderBodyV1 } from "@arbiter/protocol";
import { jetstreamManager, type StreamConfig } from "@nats-io/jetstream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { until } from "./harness/index.js";
import { type SingleNodeArbiter, startSingleNodeArbiter } from "./support/arbiter.js";
import { fixtureBytes, fixtureJson } from "./support/fixtures.js";
import { captureLog } from "./support/log-capture.js";

const HOST = {
  publicKey: "NBLSJGGOETB677FQL63PWKDCVMOW4LXVI7S6WXSP55H7L5RNRKUDZKGE",
  lattice: "default",
  labels: {},
};
const provider = (providerId: string): StartProviderBodyV1 => ({
  ...(fixtureJson("start-provider").request as StartProviderBodyV1),
  providerId,
});

/** Deletes the decision stream; returns its configuration, to add it back. */
async function deleteDecisionStream(arbiter: SingleNodeArbiter): Promise<StreamConfig> {
  const jsm = await jetstreamManager(arbiter.nc);
  const info = await jsm.streams.info(resourceNames().decisionsStream);
  await jsm.streams.delete(info.config.name);
  return info.config;
}

async function addStream(arbiter: SingleNodeArbiter, config: StreamConfig): Promise<void> {
  await (await jetstreamManager(arbiter.nc)).streams.add(config);
}

describe("when the decision log is unavailable (default: no answer)", () => {
  let arbiter: SingleNodeArbiter;
  const log = captureLog();

  beforeAll(async () => {
    arbiter = await startSingleNodeArbiter({ ackTimeoutMs: 500 }, { logger: log.logger });
  });

  afterAll(async () => {
    await arbiter?.stop();
  });

  it("leaves the request unanswered, so the host fails closed without caching, and is degraded until the log is back", async () => {
    const host = createHostPolicyClient({ nc: arbiter.nc, changesTopic: null, timeoutMs: 1500, host: HOST });
    expect((await host.evaluateStartProvider(provider("before"))).permitted).toBe(true);
    expect(arbiter.worker.health).toEqual({ state: "ready", reason: null });

    const config = await deleteDecisionStream(arbiter);
    const during = await host.evaluateStartProvider(provider("during"));
    expect(during).toMatchObject({ permitted: false, cached: false, failure: "timeout" });
    expect([...host.cacheEntries().keys()].some((key) => key.includes("during"))).toBe(false);
    expect(arbiter.worker.stats()).toMatchObject({ logFailures: 1, unansweredOutage: 1 });
    expect(arbiter.worker.health).toMatchObject({
      state: "degraded",
      reason: expect.stringMatching(/decision log does not acknowledge/),
    });
    await until(
      () => log.lines().some((l) => l["requests"] === 1 && /decision log unavailable/.test(String(l["msg"]))),
      {
        name: "the outage logged with its count",
      },
    );

    await addStream(arbiter, config);
    // Asked again, as a host does next time: now answered and cached.
    const after = await host.evaluateStartProvider(provider("during"));
    expect(after).toMatchObject({ permitted: true, cached: false });
    expect(after.failure).toBeUndefined();
    expect(arbiter.worker.health).toEqual({ state: "ready", reason: null });
  });
});

describe("when the decision log is unavailable with onLogOutage: deny", () => {
  let arbiter: SingleNodeArbiter;

  beforeAll(async () => {
    arbiter = await startSingleNodeArbiter({ ackTimeoutMs: 500, onLogOutage: "deny" });
  });

  afterAll(async () => {
    await arbiter?.stop();
  });

  it("denies what it would permit, says why, and permits again once the log is back", async () => {
    const ask = () => arbiter.ask(fixtureBytes("start-provider"));
    expect((await ask()).permitted).toBe(true);
    const config = await deleteDecisionStream(arbiter);
    expect(await ask()).toMatchObject({
      permitted: false,
      message: expect.stringMatching(/decision log is unavailable/),
    });
    expect(arbiter.worker.stats()).toMatchObject({ logFailures: 1, unansweredOutage: 0 });
    expect(arbiter.worker.status).toBe("degraded");
    await addStream(arbiter, config);
    expect((await ask()).permitted).toBe(true);
    expect(arbiter.worker.status).toBe("ready");
  });
});
