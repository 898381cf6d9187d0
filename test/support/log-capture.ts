import { Writable } from "node:stream";
import { type Logger, pino } from "pino";

/** A pino logger writing JSON lines into memory, and the lines it has written so far, parsed. */
export interface CapturedLog {
  readonly logger: Logger;
  lines(): Array<Record<string, unknown>>;
}

/** Captures a component's log in memory (level `info` unless told), for assertions on what it said. */
export function captureLog(level = "info"): CapturedLog {
  const lines: Array<Record<string, unknown>> = [];
  let partial = "";
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      partial += chunk.toString();
      const complete = partial.split("\n");
      partial = complete.pop() ?? "";
      for (const line of complete) if (line.length > 0) lines.push(JSON.parse(line));
      done();
    },
  });
  return { logger: pino({ level }, sink), lines: () => [...lines] };
}
