import type { HostPolicyClient } from "@arbiter/host";
import { DEFAULT_POLICY_TOPIC } from "@arbiter/protocol";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { until } from "./harness/index.js";
import { componentBody, defaultRules } from "./support/fanout.js";
import { type FanoutArbiter, startFanoutArbiter } from "./support/fanout-setup.js";

// A worker busy in JSON.parse reads nothing from its connection, and nats-server cuts off a
// connection for which more than 64 MB wait (`max_pending`) as a slow consumer. JSON.parse takes
// ten times longer per byte on brackets than on flat text: a request of a megabyte of nested
// arrays cost a worker 0.15 s, sixteen of them (one slice of its queue) over two seconds, and a
// few host connections sending them cut the worker off within seconds, and again after each
// reconnect: no request of any host was answered meanwhile.

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

describe("a host's requests of nested brackets", () => {
  it("do not make nats-server cut a worker off as a slow consumer", async () => {
    const cuts: string[] = [];
    void (async () => {
      for await (const s of arbiter.workerConnections[0]!.status()) {
        if (s.type === "disconnect" || s.type === "slowConsumer") cuts.push(s.type);
      }
    })();
    const n = 512 * 1024 - 64;
    const id = "0194e000-0000-7000-8000-00000000b0b0";
    const bomb = new TextEncoder().encode(
      `{"requestId":"${id}","kind":"startComponent","pad":${"[".repeat(n - 40)}${"]".repeat(n - 40)}}`,
    );
    expect(bomb.length).toBeLessThanOrEqual(1024 * 1024);
    const hosts = await Promise.all(Array.from({ length: CONNECTIONS }, () => arbiter.connect("host")));
    for (let round = 0; round < ROUNDS; round++) {
      for (const h of hosts) {
        for (let i = 0; i < PER_ROUND; i++)
          h.publish(DEFAULT_POLICY_TOPIC, bomb, { reply: `_INBOX.bomb.${round}.${i}` });
      }
      await Promise.all(hosts.map((h) => h.flush()));
    }
    // Still connected, and answering: an honest host's request after the flood is decided.
    await until(
      async () => (await honest.evaluateStartComponent(componentBody(`after-${Date.now()}`))).permitted,
      { name: "an honest request answered after the flood", timeout: 60_000 },
    );
    expect(await slowConsumers()).toBe(0);
    expect(cuts).toEqual([]);
  }, 180_000);
});
