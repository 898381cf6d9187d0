import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { NatsConnection } from "@nats-io/nats-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectTo, type NatsServerProcess, startNatsServer } from "./harness/index.js";
import { runArbiter } from "./support/cli.js";

// A JetStream that takes requests and answers none (a cluster node gone mid-request, an overloaded
// server): the command must say that NATS did not answer, not that Arbiter's streams are missing,
// which sends a new operator to run `rules apply` or `up` against a deployment that has them.
describe("the CLI against a JetStream API that does not answer", () => {
  let server: NatsServerProcess;
  let staller: NatsConnection;
  const home = mkdtempSync(join(tmpdir(), "arbiter-operator-timeouts-"));

  beforeAll(async () => {
    server = await startNatsServer({ jetstream: false });
    staller = await connectTo(server.url);
    staller.subscribe("$JS.API.>", { callback: () => undefined });
    await staller.flush();
  });

  afterAll(async () => {
    await staller?.close();
    await server?.stop();
    rmSync(home, { recursive: true, force: true });
  });

  it.each([[["rules", "show"]], [["status"]], [["revocations", "list"]]])(
    "%j exits 4 saying NATS did not answer in time",
    async (args) => {
      const result = await runArbiter([...args, "--json"], { ARBITER_HOME: home, NATS_URL: server.url });
      expect(result.code, result.stderr).toBe(4);
      const error = (
        JSON.parse(result.stderr.trim().split("\n").at(-1) ?? "{}") as {
          error: { code: string; message: string };
        }
      ).error;
      expect(error.code).toBe("STORE_UNAVAILABLE");
      expect(error.message).not.toMatch(/no Arbiter streams/);
      expect(error.message).toContain(
        `NATS server ${server.url} did not answer a JetStream request within 5 s`,
      );
    },
  );
});
