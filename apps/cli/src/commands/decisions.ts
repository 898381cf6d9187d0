import { DecisionV1 } from "@arbiter/protocol";
import { type DecisionFilter, openJetStreamStore } from "@arbiter/store";
import { Command } from "commander";
import {
  type ConnectionFlags,
  connectNats,
  resolvePrefix,
  resolveReplicas,
  resolveServers,
} from "../context.js";
import { parseTime } from "../duration.js";
import { createLogger, untilSignal } from "../lifecycle.js";
import { emit, emitLine } from "../output.js";

interface DecisionFlags extends ConnectionFlags {
  since?: string;
  host?: string;
  kind?: string;
  limit?: string;
}

const withFilters = (command: Command) =>
  command
    .option("--servers <urls>", "NATS server URLs, comma-separated (env NATS_URL)")
    .option("--replicas <n>", "replicas for streams created on first use (env ARBITER_REPLICAS)")
    .option("--prefix <prefix>", "stream/subject/bucket prefix (env ARBITER_PREFIX)")
    .option("--since <time>", "from this time: ISO-8601, or an age such as 15m, 2h, 7d")
    .option("--host <key>", "only decisions for this host public key")
    .option("--kind <kind>", "only this kind (startComponent, startProvider, performInvocation, …)")
    .option("--json", "print decision records as JSON");

/** One decision as a line of text. */
function describeDecision(d: DecisionV1): string {
  const subject = d.cacheKey.slice(d.cacheKey.indexOf(":") + 1) || "-";
  return `${d.evaluatedAt}  ${d.permitted ? "PERMIT" : "DENY  "}  ${d.kind.padEnd(17)}  ${d.host.slice(0, 12) || "-"}  ${subject}  r${d.revision}  ${d.message}`;
}

function filterFrom(flags: DecisionFlags): DecisionFilter {
  return {
    ...(flags.since ? { since: parseTime(flags.since, "--since") } : {}),
    ...(flags.host ? { host: flags.host } : {}),
    ...(flags.kind ? { kind: flags.kind } : {}),
  };
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
    const limit = Math.max(1, Number(flags.limit) || 100);
    const nc = await connectNats(resolveServers(flags), "arbiter-cli");
    const found: DecisionV1[] = [];
    try {
      const store = await openJetStreamStore(nc, {
        prefix: resolvePrefix(flags),
        replicas: resolveReplicas(flags),
      });
      for await (const stored of store.decisions.read(filterFrom(flags))) {
        const parsed = DecisionV1.safeParse(JSON.parse(stored.text));
        if (!parsed.success) continue;
        found.push(parsed.data);
        if (found.length > limit) found.shift();
      }
    } finally {
      await nc.close();
    }
    emit(flags.json === true, found, () =>
      found.length === 0 ? "no decisions" : found.map(describeDecision).join("\n"),
    );
  });

  withFilters(
    decisions.command("tail").description("follow decisions as they are recorded (Ctrl-C stops)"),
  ).action(async (flags: DecisionFlags) => {
    const nc = await connectNats(resolveServers(flags), "arbiter-cli", true);
    const store = await openJetStreamStore(nc, {
      prefix: resolvePrefix(flags),
      replicas: resolveReplicas(flags),
    });
    const abort = new AbortController();
    const stopped = untilSignal(async () => abort.abort(), createLogger("arbiter-cli"));
    const filter = { since: new Date(), ...filterFrom(flags), follow: true, signal: abort.signal };
    for await (const stored of store.decisions.read(filter)) {
      const parsed = DecisionV1.safeParse(JSON.parse(stored.text));
      if (!parsed.success) continue;
      if (flags.json) emitLine(parsed.data);
      else process.stdout.write(`${describeDecision(parsed.data)}\n`);
    }
    await stopped;
    await nc.close();
  });

  return decisions;
}
