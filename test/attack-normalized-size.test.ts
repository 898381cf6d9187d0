import type { HostPolicyClient } from "@arbiter/host";
import { resourceNames } from "@arbiter/protocol";
import { jetstreamManager } from "@nats-io/jetstream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { until } from "./harness/index.js";
import { askPolicy, startComponentText } from "./support/crafted-requests.js";
import { applyRules, componentBody, defaultRules, untilRevisionReevaluated } from "./support/fanout.js";
import { type FanoutArbiter, startFanoutArbiter } from "./support/fanout-setup.js";

// A host's request is recorded with its own bytes, but the active index stores it parsed and
// written again, where a number's text can grow five times (`1e20` is 100000000000000000000),
// and JSON.parse reads a number beyond a double's range as Infinity, which JSON writes as null.
// Either one, unchecked, let one request stall the index projection (an entry over max_payload,
// redelivered forever: no decision indexed after it, no override for any host), or make a
// re-evaluation record say something other than what was evaluated.

let arbiter: FanoutArbiter;
let honest: HostPolicyClient;

beforeAll(async () => {
  arbiter = await startFanoutArbiter({ rules: defaultRules("allow"), workers: ["w1"] });
  honest = await arbiter.startHost();
});

afterAll(async () => {
  await arbiter?.close();
});

/** Sends `text` as a host would and returns the answer. */
const ask = async (text: string) => askPolicy(await arbiter.connect("host"), text);

const requestText = (id: string, extra: string) => startComponentText({ requestId: id, extra });

describe("requests whose normalized form is larger or different than their bytes", () => {
  it("denies a request that fits max_payload but whose index entry would not, and revocations go on for everyone else", async () => {
    expect((await honest.evaluateStartComponent(componentBody("honest-before"))).permitted).toBe(true);
    // 840 KB as sent, over 1 MB once its numbers are written out again (in fewer than the
    // 10,000 values a request may hold).
    const padded = requestText(
      "0194a000-0000-7000-8000-000000000001",
      `,"text":"${"x".repeat(800_000)}","pad":[${Array(9_000).fill("1e20").join(",")}]`,
    );
    expect(Buffer.byteLength(padded)).toBeLessThan(850_000);
    const answer = await ask(padded);
    expect(answer.permitted).toBe(false);
    expect(answer.message).toMatch(/too large to record/);
    expect((await honest.evaluateStartComponent(componentBody("honest-after"))).permitted).toBe(true);

    // The projection is not stuck behind it: a rules change reaches both honest entries.
    const revision = await applyRules(arbiter.admin, defaultRules("deny"));
    await untilRevisionReevaluated(arbiter.nc, revision);
    await until(() => [...honest.cacheEntries().values()].every((e) => !e.permitted), {
      name: "both honest entries revoked",
      timeout: 15_000,
    });
    const jsm = await jetstreamManager(arbiter.nc);
    const names = resourceNames();
    const consumer = await jsm.consumers.info(names.decisionsStream, names.activeIndexConsumer);
    expect(consumer.num_pending + consumer.num_ack_pending).toBe(0);
    await applyRules(arbiter.admin, defaultRules("allow"));
  });

  it("denies a request with a number beyond a double's range, which no record could keep as it was evaluated", async () => {
    const answer = await ask(requestText("0194a000-0000-7000-8000-000000000002", `,"limit":1e400`));
    expect(answer.permitted).toBe(false);
    expect(answer.message).toMatch(/beyond the range of a double/);
    // A finite number of any spelling is fine.
    const fine = await ask(
      requestText("0194a000-0000-7000-8000-000000000003", `,"limit":1.5e300,"small":-2e-300`),
    );
    expect(fine.permitted).toBe(true);
  });
});
