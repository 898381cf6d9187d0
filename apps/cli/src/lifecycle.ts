import { ArbiterError, ErrorCode } from "@arbiter/protocol";
import type { NatsConnection } from "@nats-io/nats-core";
import type { Logger } from "pino";
import { pino } from "pino";
import pretty from "pino-pretty";

/** Log formats of the CLI: JSON lines, or pino-pretty's coloured text for a person at a terminal. */
export type LogFormat = "json" | "pretty";

/** How the CLI logs, from the environment. */
export interface LogSettings {
  readonly level: string;
  readonly format: LogFormat;
}

const LEVELS = new Set([...Object.keys(pino.levels.values), "silent"]);

/**
 * Reads `ARBITER_LOG_LEVEL` (default `info`) and `ARBITER_LOG_FORMAT` (`json` | `pretty`; default
 * pretty when stderr is a terminal, else json). Throws INVALID_CONFIG naming the variable otherwise.
 */
export function resolveLogSettings(
  env: NodeJS.ProcessEnv = process.env,
  tty = process.stderr.isTTY === true,
): LogSettings {
  const level = env["ARBITER_LOG_LEVEL"] || "info";
  if (!LEVELS.has(level)) {
    throw new ArbiterError(
      ErrorCode.InvalidConfig,
      `ARBITER_LOG_LEVEL ${JSON.stringify(level)}: expected one of ${[...LEVELS].join(", ")}`,
    );
  }
  const format = env["ARBITER_LOG_FORMAT"] || (tty ? "pretty" : "json");
  if (format !== "json" && format !== "pretty") {
    throw new ArbiterError(
      ErrorCode.InvalidConfig,
      `ARBITER_LOG_FORMAT ${JSON.stringify(format)}: expected json or pretty`,
    );
  }
  return { level, format };
}

/** The CLI's logger on stderr (stdout carries results), as {@link resolveLogSettings} says. */
export function createLogger(name: string): Logger {
  const { level, format } = resolveLogSettings();
  const destination =
    format === "pretty"
      ? pretty({ destination: 2, sync: true, colorize: process.stderr.isTTY === true })
      : pino.destination(2);
  return pino({ name, level }, destination);
}

const STOP_SIGNALS: readonly NodeJS.Signals[] = ["SIGINT", "SIGTERM", "SIGHUP"];

/**
 * Resolves when SIGINT, SIGTERM or SIGHUP arrives, after `stop` has run once. A second signal
 * while stopping exits at once, so an operator is never stuck behind a hung drain.
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
    for (const signal of STOP_SIGNALS) process.on(signal, onSignal);
  });
}

/** How long a stopping command lets a NATS connection drain before closing it. */
const DRAIN_DEADLINE_MS = 5000;

/**
 * Drains `nc` (pending messages handled, publishes flushed) and closes it. A drain that fails or
 * has not finished by the deadline, as when NATS is gone and the drain would wait for a reconnect
 * that may never come, is cut short by closing the connection, so a stop always ends.
 */
export async function drainOrClose(nc: NatsConnection, deadlineMs = DRAIN_DEADLINE_MS): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, deadlineMs);
  });
  try {
    await Promise.race([nc.drain(), late]);
  } catch {
    // Closed below either way.
  } finally {
    clearTimeout(timer);
    if (!nc.isClosed()) await nc.close();
  }
}

/** Longest quiet time between two "cannot reach NATS yet" lines while a connection is away. */
const RECONNECT_LINE_MS = 5000;

/**
 * Logs the connection's losses and recoveries: the disconnect and the reconnect at once, and the
 * failed attempts in between at most once every 5 s, each line with the attempts since the last.
 */
export function reportConnection(nc: NatsConnection, log: Logger): void {
  void (async () => {
    let attempts = 0;
    let lastLine = 0;
    for await (const status of nc.status()) {
      switch (status.type) {
        case "disconnect":
          log.warn({ server: status.server }, "lost the connection to NATS; reconnecting");
          break;
        case "reconnecting":
          attempts++;
          if (Date.now() - lastLine >= RECONNECT_LINE_MS) {
            log.warn({ attempts }, "cannot reach NATS yet; retrying");
            attempts = 0;
            lastLine = Date.now();
          }
          break;
        case "reconnect":
          log.info({ server: status.server, attempts }, "reconnected to NATS");
          attempts = 0;
          break;
        default:
          break;
      }
    }
  })();
}
