import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runArbiter } from "./support/cli.js";
import {
  applyRules,
  componentBody,
  defaultRules,
  untilIndexCaughtUp,
  untilRevisionReevaluated,
} from "./support/fanout.js";
import { type FanoutArbiter, startFanoutArbiter } from "./support/fanout-setup.js";

// `decisions list` showed the re-evaluations of a rules change exactly as hosts' requests: a
// newcomer read the PERMIT rows a change made as hosts asking again.

let arbiter: FanoutArbiter;

beforeAll(async () => {
  arbiter = await startFanoutArbiter({ rules: defaultRules("deny"), workers: ["w1"] });
}, 60_000);

afterAll(async () => {
  await arbiter?.close();
});

describe("decisions list", () => {
  it("tells a host's request from the re-evaluation a rules change made of it", async () => {
    const host = await arbiter.startHost();
    expect((await host.evaluateStartComponent(componentBody("app"))).permitted).toBe(false);
    await untilIndexCaughtUp(arbiter.nc);
    const revision = await applyRules(arbiter.admin, defaultRules("allow"));
    await untilRevisionReevaluated(arbiter.nc, revision);
    const listed = await runArbiter(["decisions", "list"], {
      NATS_URL: arbiter.server.url,
      ARBITER_HOME: "/nonexistent-arbiter-home",
      ARBITER_LOG_LEVEL: "warn",
    });
    expect(listed.code, listed.stderr).toBe(0);
    const [header, ...rows] = listed.stdout.trim().split("\n");
    expect(header).toMatch(/^EVALUATED AT\s+ANSWER\s+CAUSE\s+KIND\s+/);
    expect(rows.map((row) => row.split(/\s+/).slice(1, 4))).toEqual([
      ["DENY", "request", "startComponent"],
      ["PERMIT", "reevaluation", "startComponent"],
    ]);
  }, 60_000);
});
