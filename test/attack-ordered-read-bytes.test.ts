import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { until } from "./harness/index.js";
import { configuredWorkerKey, type SingleNodeArbiter, startSingleNodeArbiter } from "./support/arbiter.js";
import { runArbiter, spawnArbiter } from "./support/cli.js";
import { askPolicy, nthRequestId, startComponentText } from "./support/crafted-requests.js";

// The decision log's readers (`decisions list`, `audit verify|replay`, the trail, `revocations
// list`) fetched 512 messages at a time, whatever they weigh. A host chooses how large its
// requests are, and each is recorded with its request: 512 of its 800 KB decisions asked for at
// once are far past what nats-server queues for one connection (64 MB), and it cut the reader off
// as a slow consumer. No operator could list or audit the log the host had filled.

const REQUESTS = 150;

const key = configuredWorkerKey();
let arbiter: SingleNodeArbiter;

beforeAll(async () => {
  arbiter = await startSingleNodeArbiter(key);
}, 60_000);

afterAll(async () => {
  await arbiter?.stop();
});

const env = () => ({
  NATS_URL: arbiter.server.url,
  ARBITER_ADMIN_SEED: "",
  ARBITER_ADMIN_KEYS: arbiter.signer.publicKey,
  ARBITER_HOME: "/nonexistent-arbiter-home",
  ARBITER_LOG_LEVEL: "warn",
  ARBITER_WORKER_KEYS: key.workerKeys.join(","),
});

describe("the decision log's readers over a host's large decisions", () => {
  it("list and verify every one of them", async () => {
    const extra = `,"pad":"${"x".repeat(800_000)}"`;
    for (let i = 0; i < REQUESTS; i += 5) {
      await Promise.all(
        Array.from({ length: 5 }, async (_, j) => {
          const text = startComponentText({
            requestId: nthRequestId(i + j),
            componentId: `large-${i + j}`,
            extra,
          });
          await askPolicy(arbiter.nc, text);
        }),
      );
    }
    let stored = 0;
    for await (const _ of arbiter.store.decisions.read()) stored++;
    expect(stored).toBe(REQUESTS);
    const listed = await runArbiter(["decisions", "list", "--limit", "1000", "--json"], env());
    expect(listed.stderr).toBe("");
    expect(listed.code).toBe(0);
    expect(JSON.parse(listed.stdout)).toHaveLength(REQUESTS);

    const audit = await runArbiter(["audit", "verify", "--json"], env());
    expect(audit.code).toBe(0);
    expect(JSON.parse(audit.stdout)).toMatchObject({
      valid: true,
      decisions: { checked: REQUESTS, verified: REQUESTS, failed: 0 },
    });

    // Followed from the start: the same, through a consumer that goes on.
    await using tail = spawnArbiter(["decisions", "tail", "--since", "1h", "--json"], env());
    const lines = () =>
      tail
        .stdout()
        .split("\n")
        .filter((line) => line.length > 0);
    await until(() => lines().length >= REQUESTS, { name: "every decision tailed", timeout: 60_000 });
    expect(lines()).toHaveLength(REQUESTS);
    expect(tail.stderr()).toBe("");
  }, 180_000);
});
