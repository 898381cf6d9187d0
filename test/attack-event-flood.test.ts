import type { HostPolicyClient } from "@arbiter/host";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { until } from "./harness/index.js";
import { componentBody, defaultRules } from "./support/fanout.js";
import { type FanoutArbiter, startFanoutArbiter } from "./support/fanout-setup.js";

// Lattice events are anyone's to publish under a host credential, and a worker parses each one as
// it arrives. Refused past 64 levels of nesting, a megabyte of brackets 60 deep, repeated, still
// cost JSON.parse 0.15 s, and a worker busy parsing reads nothing from its connection: a few host
// connections publishing such heartbeats made nats-server cut it off as a slow consumer (more
// than 64 MB waiting for it), again after each reconnect.

const ROUNDS = 40;
const CONNECTIONS = 4;
const PER_ROUND = 8;

let arbiter: FanoutArbiter;
let honest: HostPolicyClient;

beforeAll(async () => {
  arbiter = await startFanoutArbiter({
    rules: defaultRules("allow"),
    workers: ["w1"],
    shippedPermissions: true,
  });
  honest = await arbiter.startHost();
}, 60_000);

afterAll(async () => {
  await arbiter?.close();
});

async function slowConsumers(): Promise<number> {
  const varz = (await (await fetch(`${arbiter.server.monitorUrl}/varz`)).json()) as {
    slow_consumers: number;
  };
  return varz.slow_consumers;
}

describe("a host's heartbeats of shallow brackets by the megabyte", () => {
  it("do not make nats-server cut a worker off as a slow consumer", async () => {
    const cuts: string[] = [];
    void (async () => {
      for await (const s of arbiter.workerConnections[0]!.status()) {
        if (s.type === "disconnect") cuts.push(s.type);
      }
    })();
    const brackets = `${"[".repeat(60)}${"]".repeat(60)}`;
    const data = `[${Array(8_000).fill(brackets).join(",")}]`;
    const event = new TextEncoder().encode(
      `{"specversion":"1.0","id":"x","type":"com.wasmcloud.lattice.host_heartbeat","source":"NFORGED","datacontenttype":"application/json","data":${data}}`,
    );
    expect(event.length).toBeLessThanOrEqual(1024 * 1024);
    const hosts = await Promise.all(Array.from({ length: CONNECTIONS }, () => arbiter.connect("host")));
    for (let round = 0; round < ROUNDS; round++) {
      for (const h of hosts) {
        for (let i = 0; i < PER_ROUND; i++) h.publish("wasmbus.evt.default.host_heartbeat", event);
      }
      await Promise.all(hosts.map((h) => h.flush()));
    }
    await until(
      async () => (await honest.evaluateStartComponent(componentBody(`after-${Date.now()}`))).permitted,
      { name: "an honest request answered after the flood", timeout: 60_000 },
    );
    expect(await slowConsumers()).toBe(0);
    expect(cuts).toEqual([]);
  }, 180_000);
});
