import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { isProcessAlive } from "@arbiter/embedded-nats";
import { describe, expect, it } from "vitest";
import { until } from "./harness/index.js";
import { spawnArbiter } from "./support/cli.js";

/** The `-c` config file on a live process's command line, from /proc. */
function configOf(pid: number): string {
  const args = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
  const config = args[args.indexOf("-c") + 1];
  if (config === undefined) throw new Error(`pid ${pid} has no -c`);
  return config;
}

describe("arbiter up after an earlier one was killed (kill -9)", () => {
  it("stops the nats-server it left running and removes that server's temporary folder too", async () => {
    const home = mkdtempSync(join(tmpdir(), "arbiter-operator-leftover-"));
    const env = { ARBITER_HOME: home, ARBITER_LOG_LEVEL: "warn", NATS_URL: "", ARBITER_ADMIN_SEED: "" };
    const ready = (up: ReturnType<typeof spawnArbiter>) =>
      until(
        () =>
          up.stdout().includes("Ctrl-C stops everything") ||
          (up.child.exitCode !== null && `exited: ${up.stderr()}`),
        { name: "arbiter up ready", timeout: 30_000 },
      );
    try {
      const first = spawnArbiter(["up", "--port", "0", "--workers", "1"], env);
      await ready(first);
      const natsPid = Number(readFileSync(join(home, "nats-server.pid"), "utf8").trim());
      const leftDir = dirname(configOf(natsPid));
      expect(leftDir.startsWith(join(tmpdir(), "arbiter-nats-"))).toBe(true);
      await first.stop("SIGKILL");
      expect(isProcessAlive(natsPid)).toBe(true);

      await using second = spawnArbiter(["up", "--port", "0", "--workers", "1"], env);
      await ready(second);
      expect(second.stderr()).toContain("stopped the nats-server left running by an earlier arbiter up");
      expect(isProcessAlive(natsPid)).toBe(false);
      expect(existsSync(leftDir), `${leftDir} is left behind`).toBe(false);
    } finally {
      rmSync(home, { recursive: true, force: true });
    }
  });
});
