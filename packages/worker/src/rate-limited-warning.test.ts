import { Writable } from "node:stream";
import { pino } from "pino";
import { afterEach, describe, expect, it, vi } from "vitest";
import { RateLimitedWarning } from "./rate-limited-warning.js";

function capture() {
  const lines: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString().split("\n")) if (line) lines.push(JSON.parse(line));
      done();
    },
  });
  return { logger: pino(sink), lines };
}

describe("RateLimitedWarning", () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it("logs the first occurrence at once and the rest of the burst when the interval ends", () => {
    vi.useFakeTimers();
    const { logger, lines } = capture();
    const warning = new RateLimitedWarning(logger, "dropping", "dropped");
    for (let i = 0; i < 50_000; i++) warning.count();
    expect(lines.map((l) => l["dropped"])).toEqual([1]);
    vi.advanceTimersByTime(1000);
    expect(lines.map((l) => l["dropped"])).toEqual([1, 49_999]);
    vi.advanceTimersByTime(5000);
    expect(lines).toHaveLength(2);
    warning.count(3);
    expect(lines.map((l) => l["dropped"])).toEqual([1, 49_999, 3]);
  });

  it("flushes what is left when told", () => {
    vi.useFakeTimers();
    const { logger, lines } = capture();
    const warning = new RateLimitedWarning(logger, "dropping", "dropped");
    warning.count();
    warning.count(2);
    warning.flush();
    expect(lines.map((l) => l["dropped"])).toEqual([1, 2]);
    vi.advanceTimersByTime(2000);
    expect(lines).toHaveLength(2);
  });
});
