import type { Logger } from "pino";
import { pino } from "pino";

/** The CLI's logger: JSON lines on stderr (stdout carries results), level from ARBITER_LOG_LEVEL. */
export function createLogger(name: string): Logger {
  return pino({ name, level: process.env["ARBITER_LOG_LEVEL"] || "info" }, pino.destination(2));
}

/**
 * Resolves when SIGINT or SIGTERM arrives, after `stop` has run once. A second signal while
 * stopping exits at once, so an operator is never stuck behind a hung drain.
 */
export function untilSignal(stop: () => Promise<void>, log: Logger): Promise<void> {
  return new Promise((resolve) => {
    let stopping = false;
    const onSignal = (signal: NodeJS.Signals) => {
      if (stopping) {
        log.warn({ signal }, "second signal while stopping; exiting now");
        process.exit(130);
      }
      stopping = true;
      log.info({ signal }, "stopping");
      stop().then(resolve, (err: unknown) => {
        log.error({ err }, "error while stopping");
        resolve();
      });
    };
    process.on("SIGINT", onSignal);
    process.on("SIGTERM", onSignal);
  });
}
