import { ErrorCode } from "@arbiter/protocol";
import { describe, expect, it } from "vitest";
import { EXIT_CODE_BY_ERROR, ExitCode } from "./output.js";

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
