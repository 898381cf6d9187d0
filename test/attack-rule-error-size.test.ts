import type { HostPolicyClient } from "@arbiter/host";
import { DEFAULT_POLICY_TOPIC } from "@arbiter/protocol";
import { generateKey } from "@arbiter/trust";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { until } from "./harness/index.js";
import { applyRules, componentBody, defaultRules, untilRevisionReevaluated } from "./support/fanout.js";
import { type FanoutArbiter, startFanoutArbiter } from "./support/fanout-setup.js";

// A CEL error can quote the value it failed on: a lookup in a table of the rule's own,
// `{"trusted-app": true}[subject.id]`, fails on any other id with "field not found: <the id>",
// the whole id. Each rule that fails records its message in the decision, so a request for a
// component of a 240 KB id, recorded and indexed under rules that did not look it up, had a
// re-evaluation record of six times that under rules with four such lookups: too large for a
// message even without its request, it failed its chunk at every delivery, and no host got an
// override of that revision.

let arbiter: FanoutArbiter;
let honest: HostPolicyClient;

beforeAll(async () => {
  arbiter = await startFanoutArbiter({ rules: defaultRules("allow"), workers: ["w1"] });
  honest = await arbiter.startHost();
});

afterAll(async () => {
  await arbiter?.close();
});

describe("rule errors quoting what a host sent", () => {
  it("a re-evaluation whose rule errors quote a huge claim still lets every host's override out", async () => {
    expect((await honest.evaluateStartComponent(componentBody("honest-app"))).permitted).toBe(true);
    const request = {
      requestId: "0194c000-0000-7000-8000-000000000001",
      kind: "startComponent",
      version: "v1",
      request: { ...componentBody("attacker-app"), componentId: `attacker-${"x".repeat(240_000)}` },
      host: { publicKey: generateKey("N").publicKey, lattice: "default", labels: {} },
    };
    const nc = await arbiter.connect("host");
    const answer = (
      await nc.request(DEFAULT_POLICY_TOPIC, JSON.stringify(request), { timeout: 10_000 })
    ).json<{
      permitted: boolean;
    }>();
    expect(answer.permitted).toBe(true);

    const table = (n: number) => ({
      id: `table-${n}`,
      effect: "allow",
      when: `{"trusted-app-${n}": true}[subject.id]`,
    });
    const revision = await applyRules(
      arbiter.admin,
      defaultRules("deny", [table(1), table(2), table(3), table(4)]),
    );
    await untilRevisionReevaluated(arbiter.nc, revision);
    await until(() => [...honest.cacheEntries().values()].every((e) => !e.permitted), {
      name: "the honest host's entry revoked",
      timeout: 15_000,
    });
  }, 60_000);
});
