import type { HostPolicyClient } from "@arbiter/host";
import { type ActiveIndex, openJetStreamActiveIndex } from "@arbiter/store";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { until } from "./harness/index.js";
import { askPolicy, FIXTURE_REQUEST, startComponentText } from "./support/crafted-requests.js";
import {
  applyRules,
  componentBody,
  defaultRules,
  untilIndexCaughtUp,
  untilRevisionReevaluated,
} from "./support/fanout.js";
import { type FanoutArbiter, startFanoutArbiter } from "./support/fanout-setup.js";

// Every worker keeps the active index parsed in memory (its mirror, for the scans), and a host
// chooses how much memory its requests take once parsed: 870 KB of empty objects, a request that
// fits max_payload and is answered like any other, is 19 MB of heap. Sixty of them (distinct
// components, so sixty entries) took a worker with a 700 MB heap down, and a few hundred take one
// with Node's default heap; a worker started again read them back and fell the same way.

let arbiter: FanoutArbiter;
let honest: HostPolicyClient;
let index: ActiveIndex;

beforeAll(async () => {
  arbiter = await startFanoutArbiter({ rules: defaultRules("allow"), workers: ["w1"] });
  honest = await arbiter.startHost();
  index = await openJetStreamActiveIndex(arbiter.nc, { create: false });
});

afterAll(async () => {
  await index?.close();
  await arbiter?.close();
});

/** Sends `text` as a host would and returns the answer. */
const ask = async (text: string) => askPolicy(await arbiter.connect("host"), text);

const requestText = (id: string, extra: string) => startComponentText({ requestId: id, extra });

async function entryOf(id: string) {
  const cacheKey = `startComponent:${id}-component_${FIXTURE_REQUEST.imageRef}`;
  return index.get({ lattice: FIXTURE_REQUEST.lattice, host: FIXTURE_REQUEST.host, cacheKey });
}

describe("requests whose parsed form takes many times their size in memory", () => {
  it("denies a request of hundreds of thousands of values, and the index does not keep it", async () => {
    expect((await honest.evaluateStartComponent(componentBody("honest-before"))).permitted).toBe(true);
    const id = "0194b000-0000-7000-8000-000000000001";
    const padded = requestText(id, `,"pad":[${Array(290_000).fill("{}").join(",")}]`);
    expect(Buffer.byteLength(padded)).toBeLessThan(900_000);
    const answer = await ask(padded);
    expect(answer.permitted).toBe(false);
    expect(answer.message).toMatch(/more than 10000 JSON values/);

    await untilIndexCaughtUp(arbiter.nc);
    // Recorded without the request (nothing to index: no cache key), so no worker holds it.
    expect(await entryOf(id)).toBeNull();

    // The projection and the scans go on for the honest host.
    expect((await honest.evaluateStartComponent(componentBody("honest-after"))).permitted).toBe(true);
    const revision = await applyRules(arbiter.admin, defaultRules("deny"));
    await untilRevisionReevaluated(arbiter.nc, revision);
    await until(() => [...honest.cacheEntries().values()].every((e) => !e.permitted), {
      name: "both honest entries revoked",
      timeout: 15_000,
    });
    await applyRules(arbiter.admin, defaultRules("allow"));
  });

  it("answers a request of some thousands of values as the rules say", async () => {
    const id = "0194b000-0000-7000-8000-000000000002";
    const labels = Object.fromEntries(Array.from({ length: 4000 }, (_, i) => [`label-${i}`, `value-${i}`]));
    const answer = await ask(
      requestText(id, `,"extra":${JSON.stringify({ labels, list: Array(4000).fill(0) })}`),
    );
    expect(answer.permitted).toBe(true);
  });
});
