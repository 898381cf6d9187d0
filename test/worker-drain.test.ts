import { PolicyResponseV1 } from "@arbiter/protocol";
import { generateKey } from "@arbiter/trust";
import type { NatsConnection } from "@nats-io/nats-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectTo, type NatsServerProcess, startNatsServer, until } from "./harness/index.js";
import { configuredWorkerEnv } from "./support/arbiter.js";
import { type RunningArbiter, runArbiter, spawnArbiter } from "./support/cli.js";
import { fixtureJson } from "./support/fixtures.js";

const EXAMPLE = new URL("../deploy/rules/example.yaml", import.meta.url).pathname;

describe("a worker stopped with SIGTERM under load", () => {
  let server: NatsServerProcess;
  let nc: NatsConnection;
  const workers: RunningArbiter[] = [];

  beforeAll(async () => {
    server = await startNatsServer();
    nc = await connectTo(server.url);
  });

  afterAll(async () => {
    await Promise.allSettled(workers.map((w) => w.stop("SIGKILL")));
    await nc?.close();
    await server?.stop();
  });

  it("answers every request it accepted; the other worker takes the rest", async () => {
    const admin = generateKey("O");
    const env = {
      NATS_URL: server.url,
      ARBITER_ADMIN_SEED: admin.seed,
      ARBITER_ADMIN_KEYS: admin.publicKey,
      ARBITER_LOG_LEVEL: "warn",
    };
    expect((await runArbiter(["rules", "apply", EXAMPLE], env)).code).toBe(0);
    for (const name of ["drained", "survivor"]) {
      const worker = spawnArbiter(["worker", "--name", name, "--json"], { ...env, ...configuredWorkerEnv() });
      workers.push(worker);
      await until(() => worker.stdout().includes('"ready"'), {
        name: `worker ${name} ready`,
        timeout: 20_000,
      });
    }

    const template = fixtureJson("start-provider");
    const outcomes = { answered: 0, failed: [] as string[] };
    let stopping = false;
    let sent = 0;
    const requester = async () => {
      while (!stopping || sent < 400) {
        const requestId = `drain-${sent++}`;
        const bytes = new TextEncoder().encode(JSON.stringify({ ...template, requestId }));
        try {
          const reply = await nc.request("wasmcloud.policy", bytes, { timeout: 5000 });
          const answer = PolicyResponseV1.parse(JSON.parse(reply.string()));
          if (answer.requestId !== requestId || !answer.permitted)
            outcomes.failed.push(`${requestId}: ${reply.string()}`);
          else outcomes.answered++;
        } catch (err) {
          outcomes.failed.push(`${requestId}: ${(err as Error).message}`);
        }
        if (sent > 2000) return;
      }
    };
    const load = Promise.all(Array.from({ length: 32 }, requester));
    await until(() => sent > 200, { name: "load under way", timeout: 10_000 });
    const exit = workers[0]!.stop("SIGTERM");
    stopping = true;
    expect(await exit).toBe(0);
    await load;

    expect(outcomes.failed).toEqual([]);
    expect(outcomes.answered).toBe(sent);
    expect(workers[0]!.stderr()).not.toMatch(/"level":50/);
  });
});
