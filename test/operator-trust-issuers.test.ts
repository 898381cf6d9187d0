import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { runArbiter } from "./support/cli.js";

const CLI = fileURLToPath(new URL("../apps/cli/dist/main.js", import.meta.url));
const ISSUERS = "WASMCLOUD_CLUSTER_ISSUERS";

// With WASMCLOUD_CLUSTER_ISSUERS not set at all, `trust verify-invocation` said it "is empty",
// sending the operator to look for an empty variable that is not there.
describe("trust verify-invocation with no cluster issuers", () => {
  it("says the variable is not set when it is not, and names no key when it names none", async () => {
    const withoutIssuers = Object.fromEntries(
      Object.entries(process.env).filter(([name]) => name !== ISSUERS),
    );
    const unset = spawnSync(process.execPath, [CLI, "trust", "verify-invocation", "-"], {
      env: withoutIssuers,
      input: "{}",
      encoding: "utf8",
    });
    expect(unset.status, unset.stderr).toBe(2);
    expect(unset.stderr).toContain(
      "no cluster issuers: pass --issuers C…[,C…] or set WASMCLOUD_CLUSTER_ISSUERS (it is not set)",
    );
    const empty = await runArbiter(["trust", "verify-invocation", "-"], { [ISSUERS]: " " }, "{}");
    expect(empty.code, empty.stderr).toBe(2);
    expect(empty.stderr).toContain("(WASMCLOUD_CLUSTER_ISSUERS names no key)");
    const flag = await runArbiter(["trust", "verify-invocation", "-", "--issuers", ""], {}, "{}");
    expect(flag.code, flag.stderr).toBe(2);
    expect(flag.stderr).toContain("(--issuers names no key)");
  });
});
