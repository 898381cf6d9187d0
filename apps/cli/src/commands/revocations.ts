import type { RevocationV1 } from "@arbiter/protocol";
import { openJetStreamRevocationLog, type RevocationFilter } from "@arbiter/store";
import { Command } from "commander";
import {
  type ConnectionFlags,
  connectNats,
  openExistingStore,
  reportServer,
  resolvePrefix,
  resolveServers,
  SERVERS_HELP,
} from "../context.js";
import { parseTime } from "../duration.js";
import { checkHostFlag, parseIntegerFlag } from "../flags.js";
import { createLogger, reportConnection, untilSignal } from "../lifecycle.js";
import { shownText } from "../shown-text.js";

interface RevocationFlags extends ConnectionFlags {
  since?: string;
  host?: string;
  limit?: string;
}

const withFilters = (command: Command) =>
  command
    .option("--servers <urls>", SERVERS_HELP)
    .option("--prefix <prefix>", "stream/subject/bucket prefix (env ARBITER_PREFIX)")
    .option("--since <time>", "from this time: ISO-8601, or an age such as 15m, 2h, 7d")
    .option("--host <key>", "only overrides sent to this host public key (N…, in full)")
    .option("-v, --verbose", "say on stderr which NATS server was used")
    .option("--json", "print each revocation record (RevocationV1) as JSON");

const COLUMNS = ["AT", "REVISION", "HOST", "REQUEST ID", "FROM", "TO", "SUBJECT", "MESSAGE"] as const;
const WIDTHS = [24, 8, 56, 36, 6, 6, 0, 0] as const;

/** The SUBJECT column's width when the rows are not known in advance (`tail`). */
const TAIL_SUBJECT_WIDTH = 0;

function row(cells: readonly string[], subjectWidth: number): string {
  return cells
    .map((cell, i) => {
      const width = i === 6 ? subjectWidth : (WIDTHS[i] ?? 0);
      return width > 0 ? cell.padEnd(width) : cell;
    })
    .join("  ");
}

/** What the SUBJECT column shows: the cache key without its kind, escaped as {@link shownText} does. */
function subjectOf(r: RevocationV1): string {
  return shownText(r.cacheKey.slice(r.cacheKey.indexOf(":") + 1)) || "-";
}

/**
 * One revocation as a line of the table. The host key, request id, cache key and message are what
 * a host's request said (or the rules' message), shown with {@link shownText} so that no escape
 * sequence in them reaches the terminal.
 */
export function describeRevocation(r: RevocationV1, subjectWidth = TAIL_SUBJECT_WIDTH): string {
  const answer = (permitted: boolean) => (permitted ? "PERMIT" : "DENY");
  return row(
    [
      r.at,
      `r${r.revision}`,
      shownText(r.host) || "-",
      shownText(r.requestId),
      answer(r.from.permitted),
      answer(r.to.permitted),
      subjectOf(r),
      shownText(r.to.message ?? ""),
    ],
    subjectWidth,
  );
}

/** The filter the flags ask for; `--host` must be a whole host key. Throws INVALID_CONFIG. */
function filterFrom(flags: RevocationFlags): RevocationFilter {
  if (flags.host !== undefined) checkHostFlag(flags.host);
  return {
    ...(flags.since ? { since: parseTime(flags.since, "--since") } : {}),
    ...(flags.host ? { host: flags.host } : {}),
  };
}

/** `arbiter revocations list|tail`: the overrides Arbiter sent after rules changes. */
export function revocationsCommand(): Command {
  const revocations = new Command("revocations").description(
    "read the revocation log: every override of a host's cached decision, sent after a rules change",
  );

  withFilters(
    revocations
      .command("list")
      .description("list recorded overrides (the most recent --limit of those matching)")
      .option("--limit <n>", "at most this many, the most recent", "100"),
  ).action(async (flags: RevocationFlags) => {
    const limit = parseIntegerFlag(flags.limit ?? "100", "--limit", { min: 1 });
    const filter = filterFrom(flags);
    const nc = await connectNats(resolveServers(flags), "arbiter-cli");
    const found: RevocationV1[] = [];
    try {
      reportServer(flags, nc);
      // Says which server has no Arbiter streams, as every read-only command does.
      await (await openExistingStore(nc, flags)).close();
      const log = openJetStreamRevocationLog(nc, { prefix: resolvePrefix(flags) });
      for await (const stored of log.read(filter)) {
        found.push(stored.record);
        if (found.length > limit) found.shift();
      }
    } finally {
      await nc.close();
    }
    if (flags.json) process.stdout.write(`${JSON.stringify(found, null, 2)}\n`);
    else if (found.length === 0) process.stdout.write("no revocations\n");
    else {
      // All rows are known here, so MESSAGE lines up under its heading.
      const width = Math.max(COLUMNS[6].length, ...found.map((r) => subjectOf(r).length));
      const rows = found.map((r) => describeRevocation(r, width));
      process.stdout.write(`${row(COLUMNS, width)}\n${rows.join("\n")}\n`);
    }
  });

  withFilters(
    revocations
      .command("tail")
      .description("follow overrides as they are recorded (Ctrl-C stops); --json prints one record a line"),
  ).action(async (flags: RevocationFlags) => {
    const filter = filterFrom(flags);
    const nc = await connectNats(resolveServers(flags), "arbiter-cli", true, { waitOnFirstConnect: false });
    try {
      reportServer(flags, nc);
      await (await openExistingStore(nc, flags)).close();
      const log = createLogger("arbiter-cli");
      reportConnection(nc, log);
      const abort = new AbortController();
      const stopped = untilSignal(async () => abort.abort(), log);
      if (!flags.json) process.stdout.write(`${row(COLUMNS, TAIL_SUBJECT_WIDTH)}\n`);
      const revocationLog = openJetStreamRevocationLog(nc, { prefix: resolvePrefix(flags) });
      const follow = { since: new Date(), ...filter, follow: true, signal: abort.signal };
      try {
        for await (const stored of revocationLog.read(follow)) {
          process.stdout.write(
            `${flags.json ? JSON.stringify(stored.record) : describeRevocation(stored.record)}\n`,
          );
        }
      } catch (err) {
        if (!abort.signal.aborted) throw err;
      }
      await stopped;
    } finally {
      await nc.close();
    }
  });

  return revocations;
}
