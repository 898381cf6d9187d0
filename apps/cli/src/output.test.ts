import { ErrorCode } from "@arbiter/protocol";
import { describe, expect, it, vi } from "vitest";
import { EXIT_CODE_BY_ERROR, ExitCode, reportError, WrittenNotEnforcedError } from "./output.js";

describe("EXIT_CODE_BY_ERROR", () => {
  it("gives every error code the exit code of the README's table", () => {
    expect(Object.keys(EXIT_CODE_BY_ERROR).sort()).toEqual(Object.values(ErrorCode).sort());
    expect(EXIT_CODE_BY_ERROR[ErrorCode.NatsServerNotFound]).toBe(ExitCode.Unavailable);
    expect(EXIT_CODE_BY_ERROR[ErrorCode.StoreUnavailable]).toBe(ExitCode.Unavailable);
    expect(EXIT_CODE_BY_ERROR[ErrorCode.InvalidUsage]).toBe(ExitCode.InvalidInput);
    expect(EXIT_CODE_BY_ERROR[ErrorCode.RuleConflict]).toBe(ExitCode.Conflict);
    expect(EXIT_CODE_BY_ERROR[ErrorCode.Internal]).toBe(ExitCode.Failed);
  });
});

describe("reportError", () => {
  it("reports, under --json, the revision a --wait failure wrote, beside its code and message", () => {
    const written = vi.spyOn(process.stderr, "write").mockImplementation(() => true);
    try {
      const err = new WrittenNotEnforcedError(ErrorCode.WaitTimeout, "rules written at revision 7, but …", {
        revision: 7,
        deployment: "D",
      });
      expect(reportError(err, true)).toBe(5);
      expect(JSON.parse(String(written.mock.calls[0]?.[0]))).toEqual({
        error: {
          code: "WAIT_TIMEOUT",
          message: "rules written at revision 7, but …",
          written: { revision: 7, deployment: "D" },
        },
      });
    } finally {
      written.mockRestore();
    }
  });
});
