import { mkdtempSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { generateKey } from "@arbiter/trust";
import { describe, expect, it } from "vitest";
import { runArbiter } from "./support/cli.js";

// Whoever can put a file where an auditor runs `arbiter audit verify --file` chooses its bytes: a
// header, then one line of gigabytes (here a sparse file: no disk used). The verifier must refuse
// it, naming the line, with the exit code of bad input, not die of a string too long for memory.

describe("audit verify --file on a hostile export", () => {
  it("refuses a line longer than any export line, without reading it whole", async () => {
    const dir = mkdtempSync(join(tmpdir(), "arbiter-export-attack-"));
    const file = join(dir, "huge.jsonl");
    const bounds = { firstSeq: 1, lastSeq: 0 };
    const header = {
      format: "arbiter-trail-v1",
      exportedAt: "2026-01-01T00:00:00.000Z",
      prefix: "arbiter",
      since: null,
      until: null,
      rules: { name: "ARBITER_RULES", ...bounds },
      decisions: { name: "ARBITER_DECISIONS", ...bounds },
    };
    writeFileSync(file, `${JSON.stringify(header)}\n`);
    truncateSync(file, 3 * 2 ** 30);
    const result = await runArbiter(["audit", "verify", "--file", file, "--json"], {
      NATS_URL: "nats://127.0.0.1:1",
      ARBITER_HOME: "/nonexistent-arbiter-home",
      ARBITER_ADMIN_SEED: "",
      ARBITER_ADMIN_KEYS: generateKey("O").publicKey,
    });
    expect(result.code, result.stderr).toBe(2);
    expect(JSON.parse(result.stderr)).toEqual({
      error: {
        code: "INVALID_CONFIG",
        message: `--file ${file}: line 2 is longer than 67108864 bytes, which no line of an export is; not read further`,
      },
    });
  });
});
