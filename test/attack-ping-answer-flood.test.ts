import { createLatticeHost, latticeEventJson } from "@arbiter/host";
import { generateKey } from "@arbiter/trust";
import type { NatsConnection } from "@nats-io/nats-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { until } from "./harness/index.js";
import { componentBody, defaultRules, untilIndexCaughtUp } from "./support/fanout.js";
import { type FanoutArbiter, startFanoutArbiter } from "./support/fanout-setup.js";
import { captureLog } from "./support/log-capture.js";

// Every connection of a host credential may answer each ping a worker sends (allow_responses), with
// up to max_payload. The worker pinged on its JetStream connection: 120 host connections answering
// one ping (made by a forged host_stopped) with a megabyte each made nats-server cut that
// connection off as a slow consumer, and with it the decision log's acknowledgements, the index
// mirror and the re-evaluations in flight. Pings and lattice events now come in on the connection
// hosts' requests do, which their flood can cut anyway.

const CONNECTIONS = 120;

let arbiter: FanoutArbiter;
let storeNc: NatsConnection;
const log = captureLog("info");
const storeBreaks: string[] = [];

beforeAll(async () => {
  arbiter = await startFanoutArbiter({
    rules: defaultRules("allow"),
    workers: [],
    shippedPermissions: true,
    workerLogger: log.logger,
  });
  storeNc = await arbiter.connect("worker");
  void (async () => {
    for await (const status of storeNc.status()) storeBreaks.push(status.type);
  })();
  await arbiter.startWorker("w1", { storeNc });
}, 60_000);

afterAll(async () => {
  await arbiter?.close();
});

describe("hosts answering a worker's ping with a megabyte each", () => {
  it("do not cut off the worker's JetStream connection", async () => {
    const key = generateKey("N").publicKey;
    const honest = await arbiter.startHost({}, key);
    const presence = createLatticeHost({
      nc: await arbiter.connect("host"),
      publicKey: key,
      lattice: "default",
    });
    await presence.start();
    expect((await honest.evaluateStartComponent(componentBody("payments"))).permitted).toBe(true);
    await untilIndexCaughtUp(arbiter.nc);

    const answer = new Uint8Array(1024 * 1024 - 512).fill(0x20);
    const attackers = await Promise.all(Array.from({ length: CONNECTIONS }, () => arbiter.connect("host")));
    for (const attacker of attackers) {
      attacker.subscribe("wasmbus.ctl.v1.default.host.ping", {
        callback: (_e, m) => {
          m.respond(answer);
        },
      });
    }
    await Promise.all(attackers.map((a) => a.flush()));
    attackers[0]!.publish(
      "wasmbus.evt.default.host_stopped",
      latticeEventJson("host_stopped", key, { labels: {} }),
    );
    await attackers[0]!.flush();
    await until(() => log.lines().some((l) => /still answer pings|connection broke/.test(String(l["msg"]))), {
      name: "the worker done with the forged stop",
      timeout: 120_000,
    });
    expect(storeBreaks.filter((type) => type === "disconnect")).toEqual([]);
    await presence.crash().catch(() => {});
  }, 240_000);
});
