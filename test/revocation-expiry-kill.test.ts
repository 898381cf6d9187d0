import type { HostPolicyClient } from "@arbiter/host";
import { generateKey } from "@arbiter/trust";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { until } from "./harness/index.js";
import type { RunningArbiter } from "./support/cli.js";
import { componentBody, defaultRules, untilIndexCaughtUp } from "./support/fanout.js";
import { type FanoutArbiter, startFanoutArbiter } from "./support/fanout-setup.js";

// Two `arbiter worker` processes; the one holding the expiry timer of a cached permit is killed
// with SIGKILL before the claims expire. The timer lives on the server, so the other worker takes
// it when it is due and sends the override.

const EXPIRED = "component claims have expired";

let arbiter: FanoutArbiter;
const workers: RunningArbiter[] = [];
let client: HostPolicyClient;

beforeAll(async () => {
  arbiter = await startFanoutArbiter({
    workers: [],
    storeOptions: { revocationAckWaitMs: 2000 },
    rules: defaultRules("allow", [
      { id: "no-expired-claims", effect: "deny", when: "claims != null && claims.expired", message: EXPIRED },
    ]),
  });
  const keys = [generateKey("N"), generateKey("N")];
  const env = { ARBITER_WORKER_KEYS: keys.map((k) => k.publicKey).join(","), ARBITER_LOG_LEVEL: "debug" };
  for (const [i, key] of keys.entries()) {
    workers.push(await arbiter.spawnWorker(`w${i}`, { seed: key.seed, env }));
  }
  client = await arbiter.startHost();
}, 60_000);

afterAll(async () => {
  await arbiter?.close();
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
    await untilIndexCaughtUp(arbiter.nc);
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
