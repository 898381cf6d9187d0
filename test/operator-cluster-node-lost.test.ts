import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { until } from "./harness/index.js";
import { spawnArbiter } from "./support/cli.js";

// With one node of `up --nodes 3` killed, `up` logged only "nats-server was killed by SIGKILL" and
// ran on: nothing said that it goes on with two nodes, nor how the third comes back.
describe("arbiter up --nodes 3 with one node killed", () => {
  const home = mkdtempSync(join(tmpdir(), "arbiter-operator-node-lost-"));

  afterAll(() => rmSync(home, { recursive: true, force: true }));

  it("says it runs on with two nodes and that the node comes back when up starts again", async () => {
    const env = { ARBITER_HOME: home, ARBITER_LOG_LEVEL: "warn", ARBITER_LOG_FORMAT: "json", NATS_URL: "" };
    await using up = spawnArbiter(["up", "--nodes", "3", "--port", "0", "--workers", "1"], env);
    await until(
      () =>
        up.stdout().includes("Ctrl-C stops everything") ||
        (up.child.exitCode !== null && `exited: ${up.stderr()}`),
      { name: "arbiter up --nodes 3 ready", timeout: 90_000 },
    );
    const pids = readFileSync(join(home, "nats-server.pid"), "utf8").trim().split("\n").map(Number);
    expect(pids).toHaveLength(3);
    process.kill(pids[0]!, "SIGKILL");
    const line = await until(
      () =>
        up
          .stderr()
          .split("\n")
          .find((l) => l.includes(`"natsPid":${pids[0]}`)) ?? false,
      { name: "the lost node logged", timeout: 20_000 },
    );
    const logged = JSON.parse(line) as { msg: string; running: number };
    expect(logged.running).toBe(2);
    expect(logged.msg).toBe(
      "nats-server was killed by SIGKILL; 2 of 3 nodes still run, enough for the R3 streams, and up goes on: the node comes back when arbiter up is started again (Ctrl-C, then arbiter up)",
    );
    expect(up.child.exitCode).toBeNull();
    expect(await up.stop()).toBe(0);
  }, 150_000);
});
