import { ArbiterError, DecisionV1, ErrorCode, RequestKindV1 } from "@arbiter/protocol";
import type { DecisionFilter } from "@arbiter/store";
import { Command } from "commander";
import {
  type ConnectionFlags,
  connectNats,
  openExistingStore,
  reportServer,
  resolveServers,
  SERVERS_HELP,
} from "../context.js";
import { parseTime } from "../duration.js";
import { checkHostFlag, parseIntegerFlag } from "../flags.js";
import { createLogger, reportConnection, untilSignal } from "../lifecycle.js";
import { addExportCommand } from "./trail.js";

interface DecisionFlags extends ConnectionFlags {
  since?: string;
  host?: string;
  kind?: string;
  limit?: string;
}

const withFilters = (command: Command) =>
  command
    .option("--servers <urls>", SERVERS_HELP)
    .option("--prefix <prefix>", "stream/subject/bucket prefix (env ARBITER_PREFIX)")
    .option("--since <time>", "from this time: ISO-8601, or an age such as 15m, 2h, 7d")
    .option("--host <key>", "only decisions for this host public key (N…, in full)")
    .option("--kind <kind>", "only this kind (startComponent, startProvider, performInvocation, …)")
    .option("-v, --verbose", "say on stderr which NATS server was used")
    .option("--json", "print each decision record as stored, with its proof (verifies on its own)");

/** A decision as the stored text (sealed, with its proof) and the record parsed from it. */
interface ReadDecision {
  readonly text: string;
  readonly record: DecisionV1;
}

// CAUSE tells a host's request from the re-evaluation a rules change or an expiry made of it.
const COLUMNS = [
  "EVALUATED AT",
  "ANSWER",
  "CAUSE",
  "KIND",
  "HOST",
  "SUBJECT",
  "REVISION",
  "MESSAGE",
] as const;
const WIDTHS = [24, 6, 12, 17, 56, 0, 8, 0] as const;
const SUBJECT_HEADING = "SUBJECT";
/** The SUBJECT column's place among {@link COLUMNS}. */
const SUBJECT_COLUMN = COLUMNS.indexOf(SUBJECT_HEADING);
/** The SUBJECT column's width when the rows are not known in advance (`tail`). */
const TAIL_SUBJECT_WIDTH = 0;

function row(cells: readonly string[], subjectWidth: number): string {
  return cells
    .map((cell, i) => {
      const width = i === SUBJECT_COLUMN ? subjectWidth : (WIDTHS[i] ?? 0);
      return width > 0 ? cell.padEnd(width) : cell;
    })
    .join("  ");
}

/** What the SUBJECT column shows: the cache key without its kind. */
function subjectOf(d: DecisionV1): string {
  return d.cacheKey.slice(d.cacheKey.indexOf(":") + 1) || "-";
}

/** One decision as text: a row under {@link COLUMNS}, then one indented line per rule error. */
function describeDecision(d: DecisionV1, subjectWidth = TAIL_SUBJECT_WIDTH): string {
  const subject = subjectOf(d);
  const line = row(
    [
      d.evaluatedAt,
      d.permitted ? "PERMIT" : "DENY",
      d.cause,
      d.kind,
      d.host || "-",
      subject,
      `r${d.revision}`,
      d.message,
    ],
    subjectWidth,
  );
  const errors = d.ruleErrors.map((e) => `\n    rule error in ${JSON.stringify(e.ruleId)}: ${e.message}`);
  return line + errors.join("");
}

/**
 * The filter the flags ask for. `--host` must be a whole host key: the filter matches it exactly,
 * so a prefix or a typo would match nothing and look like an empty log. Throws INVALID_CONFIG.
 */
function filterFrom(flags: DecisionFlags): DecisionFilter {
  if (flags.host !== undefined) checkHostFlag(flags.host);
  if (flags.kind !== undefined) checkKindFlag(flags.kind);
  return {
    ...(flags.since ? { since: parseTime(flags.since, "--since") } : {}),
    ...(flags.host ? { host: flags.host } : {}),
    ...(flags.kind ? { kind: flags.kind } : {}),
  };
}

/**
 * Kinds compare exactly: a known kind in another case is refused (INVALID_CONFIG) naming it, as it
 * would match nothing; any other kind is kept, since a refused request records the kind it named,
 * and said on stderr, so that an empty result is not read as no host having asked.
 */
function checkKindFlag(kind: string): void {
  const kinds: readonly string[] = RequestKindV1.options;
  if (kinds.includes(kind)) return;
  const meant = kinds.find((k) => k.toLowerCase() === kind.toLowerCase());
  if (meant !== undefined) {
    throw new ArbiterError(
      ErrorCode.InvalidConfig,
      `--kind ${JSON.stringify(kind)}: kinds are compared exactly: ${meant}`,
    );
  }
  process.stderr.write(
    `arbiter: --kind ${JSON.stringify(kind)} is none of ${kinds.join(", ")}: only decisions on refused requests that named that kind match\n`,
  );
}

/** The stored text parsed as a decision, or null for a line that is not one. */
function parseDecision(text: string): DecisionV1 | null {
  try {
    const parsed = DecisionV1.safeParse(JSON.parse(text));
    return parsed.success ? parsed.data : null;
  } catch {
    return null;
  }
}

/** `arbiter decisions list|tail`. */
export function decisionsCommand(): Command {
  const decisions = new Command("decisions").description("read the decision log");

  withFilters(
    decisions
      .command("list")
      .description("list recorded decisions (the most recent --limit of those matching)")
      .option("--limit <n>", "at most this many, the most recent", "100"),
  ).action(async (flags: DecisionFlags) => {
    const limit = parseIntegerFlag(flags.limit ?? "100", "--limit", { min: 1 });
    const filter = filterFrom(flags);
    const nc = await connectNats(resolveServers(flags), "arbiter-cli");
    const found: ReadDecision[] = [];
    let skipped = 0;
    try {
      reportServer(flags, nc);
      const store = await openExistingStore(nc, flags);
      for await (const stored of store.decisions.read(filter)) {
        const record = parseDecision(stored.text);
        if (record === null) {
          skipped++;
          continue;
        }
        found.push({ text: stored.text, record });
        if (found.length > limit) found.shift();
      }
    } finally {
      await nc.close();
    }
    // Entries of the log that are not sealed decision records (unsigned, malformed, written by
    // something other than a worker) are not shown, and are not hidden silently either.
    if (skipped > 0)
      process.stderr.write(
        `arbiter: skipped ${skipped} stored entr${skipped === 1 ? "y" : "ies"} of the decision log that ${skipped === 1 ? "is" : "are"} not a sealed decision record\n`,
      );
    if (flags.json) {
      // The stored texts are spliced in unchanged: re-serialising would break their signatures.
      const body = found.map((d) => `  ${d.text}`).join(",\n");
      process.stdout.write(found.length === 0 ? "[]\n" : `[\n${body}\n]\n`);
    } else if (found.length === 0) process.stdout.write("no decisions\n");
    else {
      // All rows are known here, so the columns after SUBJECT line up under their headings.
      const width = Math.max(SUBJECT_HEADING.length, ...found.map((d) => subjectOf(d.record).length));
      const rows = found.map((d) => describeDecision(d.record, width));
      process.stdout.write(`${row(COLUMNS, width)}\n${rows.join("\n")}\n`);
    }
  });

  withFilters(
    decisions
      .command("tail")
      .description(
        "follow decisions as they are recorded (Ctrl-C stops); --json prints one stored record a line",
      ),
  ).action(async (flags: DecisionFlags) => {
    const filter = filterFrom(flags);
    // Fails fast (exit 4) when no server answers at first, then rides out reconnections.
    const nc = await connectNats(resolveServers(flags), "arbiter-cli", true, { waitOnFirstConnect: false });
    try {
      reportServer(flags, nc);
      const store = await openExistingStore(nc, flags);
      const log = createLogger("arbiter-cli");
      // A follower that goes quiet because NATS went away must say so, or it looks like an idle log.
      reportConnection(nc, log);
      const abort = new AbortController();
      const stopped = untilSignal(async () => abort.abort(), log);
      if (!flags.json) process.stdout.write(`${row(COLUMNS, TAIL_SUBJECT_WIDTH)}\n`);
      const follow = { since: new Date(), ...filter, follow: true, signal: abort.signal };
      try {
        for await (const stored of store.decisions.read(follow)) {
          const record = parseDecision(stored.text);
          if (record === null) {
            log.warn(
              { text: stored.text.slice(0, 200) },
              "skipped an entry that is not a sealed decision record",
            );
            continue;
          }
          process.stdout.write(`${flags.json ? stored.text : describeDecision(record)}\n`);
        }
      } catch (err) {
        // Closing the consumer on Ctrl-C can race a request it had under way (after a reconnect, its
        // re-creation): once stopping, that is the end of the tail, not a failure.
        if (!abort.signal.aborted) throw err;
      }
      await stopped;
    } finally {
      await nc.close();
    }
  });

  addExportCommand(decisions);
  return decisions;
}
