import { describe, expect, it } from "vitest";
import { runArbiter } from "./support/cli.js";

// With WASMCLOUD_CLUSTER_ISSUERS not set at all, `trust verify-invocation` said it "is empty",
// sending the operator to look for an empty variable that is not there.
describe("trust verify-invocation with no cluster issuers", () => {
  it("says the variable is not set when it is not, and empty when it is", async () => {
    const saved = process.env["WASMCLOUD_CLUSTER_ISSUERS"];
    delete process.env["WASMCLOUD_CLUSTER_ISSUERS"];
    try {
      const unset = await runArbiter(["trust", "verify-invocation", "-"], {}, "{}");
      expect(unset.code, unset.stderr).toBe(2);
      expect(unset.stderr).toContain(
        "no cluster issuers: pass --issuers C…[,C…] or set WASMCLOUD_CLUSTER_ISSUERS (it is not set)",
      );
      const empty = await runArbiter(
        ["trust", "verify-invocation", "-"],
        { WASMCLOUD_CLUSTER_ISSUERS: " " },
        "{}",
      );
      expect(empty.code, empty.stderr).toBe(2);
      expect(empty.stderr).toContain("(WASMCLOUD_CLUSTER_ISSUERS names no key)");
      const flag = await runArbiter(["trust", "verify-invocation", "-", "--issuers", ""], {}, "{}");
      expect(flag.code, flag.stderr).toBe(2);
      expect(flag.stderr).toContain("(--issuers names no key)");
    } finally {
      if (saved !== undefined) process.env["WASMCLOUD_CLUSTER_ISSUERS"] = saved;
    }
  });
});
