import { describe, expect, it } from "vitest";
import { resolveLogSettings } from "./lifecycle.js";

describe("resolveLogSettings", () => {
  it("logs pretty text to a terminal and JSON lines otherwise", () => {
    expect(resolveLogSettings({}, true)).toEqual({ level: "info", format: "pretty" });
    expect(resolveLogSettings({}, false)).toEqual({ level: "info", format: "json" });
  });

  it("lets ARBITER_LOG_FORMAT choose either way", () => {
    expect(resolveLogSettings({ ARBITER_LOG_FORMAT: "json" }, true).format).toBe("json");
    expect(resolveLogSettings({ ARBITER_LOG_FORMAT: "pretty" }, false).format).toBe("pretty");
  });

  it("refuses unknown levels and formats naming the variable", () => {
    expect(() => resolveLogSettings({ ARBITER_LOG_LEVEL: "loud" }, false)).toThrow(
      /ARBITER_LOG_LEVEL "loud"/,
    );
    expect(() => resolveLogSettings({ ARBITER_LOG_FORMAT: "xml" }, false)).toThrow(
      /ARBITER_LOG_FORMAT "xml"/,
    );
    expect(resolveLogSettings({ ARBITER_LOG_LEVEL: "silent" }, false).level).toBe("silent");
  });
});
