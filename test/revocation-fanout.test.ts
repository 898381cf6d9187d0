import type { HostPolicyClient } from "@arbiter/host";
import { PolicyOverrideV1, type PolicyResponseV1 } from "@arbiter/protocol";
import { openJetStreamRevocationLog, type StoredRevocation } from "@arbiter/store";
import { generateKey } from "@arbiter/trust";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { until } from "./harness/index.js";
import { runArbiter, spawnArbiter } from "./support/cli.js";
import {
  applyRules,
  componentBody,
  defaultRules,
  startHost,
  untilRevisionReevaluated,
} from "./support/fanout.js";
import { type FanoutArbiter, startFanoutArbiter } from "./support/fanout-setup.js";

// The revocation fan-out end to end: 20 reference host clients holding 25 cached denials each,
// two workers sharing the re-evaluation, real overrides on the changes topic.

const HOSTS = 20;
const PER_HOST = 25;

let arbiter: FanoutArbiter;
const hosts: HostPolicyClient[] = [];
/** The host key of each of `hosts`. */
const hostKeys: string[] = [];

beforeAll(async () => {
  arbiter = await startFanoutArbiter({ hearChanges: true });
}, 60_000);

afterAll(async () => {
  await arbiter?.close();
});

describe("revocation fan-out", () => {
  it("a rules change that permits 500 cached denials on 20 hosts reaches every one through that host's own request ids", async () => {
    for (let h = 0; h < HOSTS; h++) {
      const key = generateKey("N").publicKey;
      hostKeys.push(key);
      hosts.push(await arbiter.startHost({}, key));
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
    await until(
      () => hosts.every((host) => [...host.cacheEntries().values()].every((entry) => entry.permitted)),
      { name: "every cached denial permitted", timeout: 60_000, interval: 50 },
    );
    await untilRevisionReevaluated(arbiter.nc, revision);
    const overrides = arbiter.heard.map((text) => PolicyOverrideV1.parse(JSON.parse(text)));
    for (const override of overrides) {
      expect(override.request_id).toBe(override.requestId);
      expect(typeof override.message).toBe("string");
      expect(override.permitted).toBe(true);
    }
    for (const host of hosts) {
      const entries = [...host.cacheEntries().values()];
      expect(entries).toHaveLength(PER_HOST);
      expect(host.stats().overridesApplied).toBe(PER_HOST);
      // Each entry was overwritten under the id this host sent for it.
      for (const [requestId, cacheKey] of host.requestKeys()) {
        expect(host.cacheEntries().get(cacheKey)).toMatchObject({ requestId, permitted: true });
      }
    }
    // One override per cached decision: the revision was re-evaluated once across both workers.
    expect(overrides).toHaveLength(HOSTS * PER_HOST);
    expect(new Set(overrides.map((o) => o.requestId)).size).toBe(HOSTS * PER_HOST);
  }, 120_000);

  it("a rules change that flips nothing sends no override", async () => {
    const before = arbiter.heard.length;
    const revision = await applyRules(
      arbiter.admin,
      defaultRules("allow", [
        { id: "no-providers-yet", effect: "deny", when: 'kind == "startProvider"', message: "no providers" },
      ]),
    );
    await untilRevisionReevaluated(arbiter.nc, revision);
    await arbiter.flushHeard();
    expect(arbiter.heard.length).toBe(before);
  }, 60_000);

  it("keeps every override in ARBITER_REVOCATIONS: replayed onto fresh host clients that sent the same ids, they reproduce the caches", async () => {
    const log = openJetStreamRevocationLog(arbiter.nc);
    const records: StoredRevocation[] = [];
    for await (const stored of log.read()) records.push(stored);
    expect(records).toHaveLength(HOSTS * PER_HOST);
    // What each request was first answered, from the decision log.
    const answers = new Map<string, PolicyResponseV1>();
    for await (const stored of arbiter.store.decisions.read()) {
      const decision = JSON.parse(stored.text) as {
        cause: string;
        requestId: string;
        permitted: boolean;
        message: string;
      };
      if (decision.cause !== "request") continue;
      answers.set(decision.requestId, {
        requestId: decision.requestId,
        permitted: decision.permitted,
        message: decision.message,
      });
    }
    const replayNc = await arbiter.connect();
    const responder = replayNc.subscribe("replay.policy", {
      callback: (_e, m) => {
        const { requestId } = m.json<{ requestId: string }>();
        m.respond(JSON.stringify(answers.get(requestId)));
      },
    });
    await replayNc.flush();
    for (const [h, original] of hosts.entries()) {
      const ids = [...original.sentRequestIds()];
      const fresh = await startHost(
        replayNc,
        { policyTopic: "replay.policy", changesTopic: "replay.changes", requestIds: () => ids.shift()! },
        hostKeys[h],
      );
      for (let i = 0; i < PER_HOST; i++) await fresh.evaluateStartComponent(componentBody(`h${h}-c${i}`));
      expect([...fresh.cacheEntries().values()].every((e) => !e.permitted)).toBe(true);
      for (const { record } of records.filter((r) => r.record.host === hostKeys[h])) {
        const override: PolicyOverrideV1 = {
          requestId: record.requestId,
          request_id: record.requestId,
          permitted: record.to.permitted,
          message: record.to.message ?? "",
        };
        replayNc.publish("replay.changes", JSON.stringify(override));
      }
      await until(() => fresh.stats().overridesApplied === PER_HOST, { name: "replayed overrides applied" });
      expect(fresh.cacheEntries()).toEqual(original.cacheEntries());
      await fresh.stop();
    }
    responder.unsubscribe();
  }, 60_000);

  it("arbiter revocations list and tail show the overrides, by host and as they are recorded", async () => {
    const env = { NATS_URL: arbiter.server.url };
    const listed = await runArbiter(["revocations", "list", "--json", "--host", hostKeys[0]!], env);
    expect(listed.code, listed.stderr).toBe(0);
    const records = JSON.parse(listed.stdout) as {
      host: string;
      requestId: string;
      to: { permitted: boolean };
    }[];
    expect(records).toHaveLength(PER_HOST);
    expect(records.every((r) => r.host === hostKeys[0] && r.to.permitted)).toBe(true);
    expect(new Set(records.map((r) => r.requestId))).toEqual(new Set(hosts[0]!.sentRequestIds()));
    const text = await runArbiter(["revocations", "list", "--limit", "3"], env);
    expect(text.stdout.split("\n")[0]).toMatch(/^AT\s+REVISION\s+HOST\s+REQUEST ID\s+FROM\s+TO/);
    expect(text.stdout.trim().split("\n")).toHaveLength(4);
    // MESSAGE starts, on every row, where its heading does, whatever the subjects' lengths.
    const lastThree = JSON.parse(
      (await runArbiter(["revocations", "list", "--limit", "3", "--json"], env)).stdout,
    ) as { to: { message?: string } }[];
    const [heading, ...listedRows] = text.stdout.trimEnd().split("\n");
    const at = heading!.indexOf("MESSAGE");
    for (const [i, line] of listedRows.entries()) expect(line.slice(at)).toBe(lastThree[i]!.to.message ?? "");
    const badHost = await runArbiter(["revocations", "list", "--host", "NOPE"], env);
    expect(badHost.code).toBe(2);
    expect(badHost.stderr).toMatch(/--host "NOPE": expected a host public key in full/);

    await using tail = spawnArbiter(["revocations", "tail", "--host", hostKeys[1]!], env);
    // The tail follows from the moment it printed its heading.
    await until(() => tail.stdout().startsWith("AT "), { name: "the tail's heading", timeout: 20_000 });
    const revision = await applyRules(arbiter.admin, defaultRules("deny"));
    const rows = () => tail.stdout().trim().split("\n").slice(1);
    await until(() => rows().length === PER_HOST, {
      name: "the tail printed the host's overrides",
      timeout: 30_000,
    });
    for (const line of rows())
      expect(line).toMatch(
        new RegExp(`^\\S+\\s+r${revision}\\s+${hostKeys[1]}\\s+\\S+\\s+PERMIT\\s+DENY\\s`),
      );
  }, 90_000);
});
