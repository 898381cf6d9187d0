import type { HostPolicyClient } from "@arbiter/host";
import { resourceNames } from "@arbiter/protocol";
import { generateKey } from "@arbiter/trust";
import { jetstreamManager } from "@nats-io/jetstream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { until } from "./harness/index.js";
import { enrolledWorkerSeed } from "./support/arbiter.js";
import {
  componentBody,
  defaultRules,
  untilIndexCaughtUp,
  untilRevisionReevaluated,
} from "./support/fanout.js";
import { type FanoutArbiter, startFanoutArbiter } from "./support/fanout-setup.js";

// A permit whose claims have expired by the time the index takes it (here: decided by a worker
// whose clock is an hour behind and which takes no part in the fan-out, indexed later by another):
// its timer may have fired already, so the projection re-evaluates it as it indexes it.

const EXPIRED = "component claims have expired";

let arbiter: FanoutArbiter;
let client: HostPolicyClient;

beforeAll(async () => {
  arbiter = await startFanoutArbiter({
    rules: defaultRules("allow", [
      { id: "no-expired-claims", effect: "deny", when: "claims != null && claims.expired", message: EXPIRED },
    ]),
    workers: [],
  });
  // Both enrolled first, and every revision re-evaluated by an on-time worker that then stops: a
  // rules revision still to scan after the decision would re-evaluate it anyway.
  const seeds = [await enrolledWorkerSeed(arbiter.admin), await enrolledWorkerSeed(arbiter.admin)];
  const first = await arbiter.startWorker("first", { seed: seeds[1] });
  await untilRevisionReevaluated(
    arbiter.nc,
    (await jetstreamManager(arbiter.nc).then((j) => j.streams.info("ARBITER_RULES"))).state.last_seq,
  );
  await first.stop();
  await arbiter.startWorker("behind", {
    seed: seeds[0],
    clock: () => new Date(Date.now() - 3_600_000),
    config: { revoke: false },
  });
  client = await arbiter.startHost();
  const expiresAt = Math.floor(Date.now() / 1000) - 5;
  const claims = {
    publicKey: generateKey("M").publicKey,
    issuer: generateKey("A").publicKey,
    issuedAt: "1",
    expiresAt,
    expired: false,
  };
  expect((await client.evaluateStartComponent({ ...componentBody("late"), claims })).permitted).toBe(true);
  // The on-time worker is back once the decision is recorded, and indexes it.
  await arbiter.startWorker("second", { seed: seeds[1] });
}, 60_000);

afterAll(async () => {
  await arbiter?.close();
});

describe("a permit indexed after its claims expired", () => {
  it("is overridden as it is indexed, with no timer", async () => {
    await untilIndexCaughtUp(arbiter.nc);
    await until(
      () => [...client.cacheEntries().values()].every((e) => !e.permitted && e.message === EXPIRED),
      {
        name: "the late permit overridden",
        timeout: 30_000,
        interval: 50,
      },
    );
    expect(client.stats().overridesApplied).toBe(1);
    const info = await (await jetstreamManager(arbiter.nc)).streams.info(resourceNames().expiriesStream);
    expect(info.state.messages).toBe(0);
  });
});
