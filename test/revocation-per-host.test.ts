import type { HostPolicyClient } from "@arbiter/host";
import { DEFAULT_CHANGES_TOPIC } from "@arbiter/protocol";
import { generateKey } from "@arbiter/trust";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { until } from "./harness/index.js";
import {
  applyRules,
  componentBody,
  defaultRules,
  revocationsByRequest,
  startHost,
  untilRevisionReevaluated,
} from "./support/fanout.js";
import { type FanoutArbiter, startFanoutArbiter } from "./support/fanout-setup.js";

// Per-host changes subjects: workers with `changesPerHost` publish each override on
// `<changes topic>.<host key>`, where only that host listens, and nothing on the shared topic.

const HOSTS = 20;
const PER_HOST = 25;

let arbiter: FanoutArbiter;
/** Hosts with a real key, each subscribed to its own subject only. */
const hosts: HostPolicyClient[] = [];
/** The key of each of `hosts`. */
const hostKeys: string[] = [];

const everyEntry = (list: readonly HostPolicyClient[], permitted: boolean) =>
  list.every((host) => [...host.cacheEntries().values()].every((entry) => entry.permitted === permitted));

beforeAll(async () => {
  arbiter = await startFanoutArbiter({ workerConfig: { changesPerHost: true }, hearChanges: true });
}, 60_000);

afterAll(async () => {
  await arbiter?.close();
});

describe("per-host changes subjects", () => {
  it("a rules change that permits 500 cached denials on 20 hosts sends each host only its own overrides, on its own subject", async () => {
    for (let h = 0; h < HOSTS; h++) {
      const key = generateKey("N").publicKey;
      hostKeys.push(key);
      hosts.push(await arbiter.startHost({ changesTopic: `${DEFAULT_CHANGES_TOPIC}.${key}` }, key));
    }
    await Promise.all(
      hosts.map(async (host, h) => {
        for (let i = 0; i < PER_HOST; i++) {
          const answer = await host.evaluateStartComponent(componentBody(`h${h}-c${i}`));
          expect(answer.permitted).toBe(false);
          expect(answer.failure).toBeUndefined();
        }
      }),
    );
    const revision = await applyRules(arbiter.admin, defaultRules("allow"));
    await until(() => everyEntry(hosts, true), {
      name: "every cached denial permitted",
      timeout: 60_000,
      interval: 50,
    });
    await untilRevisionReevaluated(arbiter.nc, revision);
    for (const host of hosts) {
      expect(host.cacheEntries().size).toBe(PER_HOST);
      // Nothing of another host's reached it.
      expect(host.stats()).toMatchObject({ overridesApplied: PER_HOST, overridesIgnored: 0 });
    }
    await arbiter.nc.flush();
    expect(arbiter.heard).toEqual([]);
    // The records are what they are on the shared topic: each names its host.
    const records = await revocationsByRequest(arbiter.nc, revision);
    expect(records.size).toBe(HOSTS * PER_HOST);
    for (const [h, host] of hosts.entries()) {
      for (const id of host.sentRequestIds()) {
        expect(records.get(id)?.[0]?.host).toBe(hostKeys[h]);
      }
    }
    for (const worker of arbiter.workers) {
      const status = worker.statusRecord();
      expect(status.changesPerHost).toBe(true);
      expect(status.stats["changesSharedFallback"]).toBe(0);
    }
  }, 120_000);

  it("sends the overrides of hosts whose key is no subject token on the shared topic, losing none of the scan's others", async () => {
    // A host chooses the key its requests carry: a wildcard, a dot, a space or an over-long key
    // must neither break the worker's connection nor cost any other host its override.
    const badKeys = [">", "*", "a.b", "x y", "k".repeat(300)];
    // Everything permitted first (nothing flips when the first test did it already).
    await untilRevisionReevaluated(arbiter.nc, await applyRules(arbiter.admin, defaultRules("allow")));
    const good: HostPolicyClient[] = [];
    for (let g = 0; g < 3; g++) {
      const key = generateKey("N").publicKey;
      good.push(await arbiter.startHost({ changesTopic: `${DEFAULT_CHANGES_TOPIC}.${key}` }, key));
    }
    const bad: HostPolicyClient[] = [];
    for (const key of badKeys) {
      // The shared topic: the only subject such a host could listen on.
      bad.push(await arbiter.startHost({}, key));
    }
    for (const [g, host] of good.entries()) {
      for (let i = 0; i < 5; i++) await host.evaluateStartComponent(componentBody(`good${g}-c${i}`));
    }
    for (const [b, host] of bad.entries()) {
      const answer = await host.evaluateStartComponent(componentBody(`bad${b}`));
      expect(answer).toMatchObject({ permitted: true, cached: false });
      expect(answer.failure).toBeUndefined();
    }
    const fallbacksBefore = fallbacks();
    const sharedBefore = arbiter.heard.length;
    const revision = await applyRules(arbiter.admin, defaultRules("deny"));
    const all = [...hosts, ...good, ...bad];
    await until(() => everyEntry(all, false), {
      name: "every cached permit denied, the bad keys' too",
      timeout: 60_000,
      interval: 50,
    });
    await untilRevisionReevaluated(arbiter.nc, revision);
    for (const host of [...hosts, ...good]) expect(host.stats().overridesIgnored).toBe(0);
    for (const host of good) expect(host.stats().overridesApplied).toBe(5);
    for (const host of bad) expect(host.stats().overridesApplied).toBe(1);
    await arbiter.nc.flush();
    expect(arbiter.heard.length - sharedBefore).toBe(badKeys.length);
    expect(fallbacks() - fallbacksBefore).toBe(badKeys.length);
    for (const [w, worker] of arbiter.workers.entries()) {
      expect(arbiter.workerConnections[w]?.isClosed()).toBe(false);
      expect(worker.health.state).toBe("ready");
    }
    // And the next revision still reaches everyone.
    const again = await applyRules(arbiter.admin, defaultRules("allow"));
    await until(() => everyEntry(all, true), {
      name: "every entry permitted again",
      timeout: 60_000,
      interval: 50,
    });
    await untilRevisionReevaluated(arbiter.nc, again);
    for (const host of good)
      expect(host.stats()).toMatchObject({ overridesApplied: 10, overridesIgnored: 0 });
    expect(fallbacks() - fallbacksBefore).toBe(2 * badKeys.length);
  }, 120_000);
  it("a host claiming another host's key only sends its own overrides to that host's subject, where they are ignored", async () => {
    // Host keys are the requester's word: the attacker's entries land under the victim's key, so
    // their overrides go to the victim's subject, carrying the attacker's own request ids.
    await untilRevisionReevaluated(arbiter.nc, await applyRules(arbiter.admin, defaultRules("allow")));
    const key = generateKey("N").publicKey;
    const victimNc = await arbiter.connect();
    const attackerNc = await arbiter.connect();
    const victim = await startHost(victimNc, { changesTopic: `${DEFAULT_CHANGES_TOPIC}.${key}` }, key);
    const attacker = await startHost(attackerNc, { changesTopic: null }, key);
    try {
      for (let i = 0; i < 2; i++) await victim.evaluateStartComponent(componentBody(`victim-c${i}`));
      for (let i = 0; i < 3; i++) await attacker.evaluateStartComponent(componentBody(`attacker-c${i}`));
      const revision = await applyRules(arbiter.admin, defaultRules("deny"));
      await until(() => victim.stats().overridesApplied + victim.stats().overridesIgnored === 5, {
        name: "the victim's subject receives its 2 overrides and the attacker's 3",
        timeout: 60_000,
        interval: 50,
      });
      await untilRevisionReevaluated(arbiter.nc, revision);
      expect(victim.stats()).toMatchObject({ overridesApplied: 2, overridesIgnored: 3 });
      expect(everyEntry([victim], false)).toBe(true);
      expect(victim.cacheEntries().size).toBe(2);
    } finally {
      await victim.stop();
      await attacker.stop();
    }
  }, 120_000);
});

function fallbacks(): number {
  return arbiter.workers.reduce((n, w) => n + (w.statusRecord().stats["changesSharedFallback"] ?? 0), 0);
}
