import { readFileSync } from "node:fs";
import {
  ArbiterError,
  ErrorCode,
  isArbiterError,
  resourceNames,
  type WorkerStatusV1,
} from "@arbiter/protocol";
import { compileRules, parseRulesDocument, serializeRulesDocument } from "@arbiter/rules";
import {
  type AppliedRules,
  type ArbiterStore,
  createRulesAdmin,
  openJetStreamStore,
  type RulesAdmin,
} from "@arbiter/store";
import type { Signer } from "@arbiter/trust";
import type { NatsConnection } from "@nats-io/nats-core";
import { Command } from "commander";
import { describeEnforcement, waitHook } from "../apply-wait.js";
import {
  adminSigner,
  arbiterHome,
  type ConnectionFlags,
  connectNats,
  localAdminSeed,
  openExistingStore,
  reportServer,
  resolveAdminKeys,
  resolvePrefix,
  resolveReplicas,
  resolveServers,
  SERVERS_HELP,
  serverOf,
} from "../context.js";
import { parseIntegerFlag, parseOptionalIntegerFlag } from "../flags.js";
import { describeUnfilteredIndexConsumer } from "../index-consumer.js";
import { emit } from "../output.js";
import {
  describeRetentionChange,
  type RetentionFlags,
  resolveRetention,
  retentionOptions,
} from "../retention.js";
import { askWorkers } from "../worker-status.js";

/** Flags of the commands that read or change the rules stream. */
export interface RulesFlags extends ConnectionFlags, RetentionFlags {
  adminKeys?: string;
  expectRevision?: string;
  revision?: string;
  reason?: string;
  to?: string;
  wait?: boolean;
  waitTimeout?: string;
}

/** Reads a rules file (`-` for stdin) and validates it, conditions compiled; errors name the rule and position. */
export function readRulesFile(file: string) {
  let text: string;
  try {
    text = readFileSync(file === "-" ? 0 : file, "utf8");
  } catch (err) {
    throw new ArbiterError(
      ErrorCode.InvalidConfig,
      `cannot read rules file ${file}: ${(err as Error).message}`,
    );
  }
  const document = parseRulesDocument(text, { source: file === "-" ? "<stdin>" : file });
  // Compiled here too, so that a condition that does not compile is named before NATS is asked.
  compileRules(document);
  return document;
}

/** Which workers were asked about the signing key before a change, and what they said. */
interface KeyConfirmation {
  /** Ids of the running workers that accept the signing key. */
  readonly acceptedBy: string[];
  /** Ids of the running workers that do not (they skip the new event). */
  readonly refusedBy: string[];
}

/**
 * Refuses (ADMIN_KEY_NOT_ACCEPTED) a change the workers would skip: when admin keys are configured
 * and the signer is not among them, or when workers answer on the status subject and none accepts
 * the signer. Nothing has been written when it throws.
 */
async function confirmSigner(
  nc: NatsConnection,
  flags: RulesFlags,
  signer: Signer,
): Promise<KeyConfirmation> {
  const configured = resolveAdminKeys(flags.adminKeys);
  if (configured.length > 0 && !configured.includes(signer.publicKey)) {
    throw new ArbiterError(
      ErrorCode.AdminKeyNotAccepted,
      `the rules would be signed by ${signer.publicKey}, which is not among the accepted admin keys (${flags.adminKeys ? "--admin-keys" : "ARBITER_ADMIN_KEYS"}: ${configured.join(", ")}); nothing was written`,
    );
  }
  const workers = await askWorkers(nc, resourceNames(resolvePrefix(flags)).statusSubject);
  const accepts = (w: WorkerStatusV1) => w.adminKeys.includes(signer.publicKey);
  const confirmation = {
    acceptedBy: workers.filter(accepts).map((w) => w.id),
    refusedBy: workers.filter((w) => !accepts(w)).map((w) => w.id),
  };
  if (workers.length > 0 && confirmation.acceptedBy.length === 0) {
    const theirs = [...new Set(workers.flatMap((w) => w.adminKeys))];
    throw new ArbiterError(
      ErrorCode.AdminKeyNotAccepted,
      `the rules would be signed by ${signer.publicKey}, which no running worker accepts (${workers.map((w) => w.id).join(", ")} ${workers.length === 1 ? "accepts" : "accept"} ${theirs.length > 0 ? theirs.join(", ") : "no admin key"}); nothing was written`,
    );
  }
  return confirmation;
}

/** The line that says how far the workers confirmed the signing key. */
export function describeConfirmation(c: KeyConfirmation): string {
  if (c.acceptedBy.length === 0) return "no worker was reachable to confirm that it accepts the signing key";
  const refused = c.refusedBy.length > 0 ? `; NOT accepted by ${c.refusedBy.join(", ")}` : "";
  return `signing key accepted by ${c.acceptedBy.join(", ")}${refused}`;
}

/**
 * Signs and appends a change (creating the streams if needed) once the workers' keys allow it;
 * `written`, when given, runs on the same connection once the change is acknowledged.
 */
export async function change(
  flags: RulesFlags,
  body: (admin: RulesAdmin) => Promise<AppliedRules>,
  written?: (nc: NatsConnection, applied: AppliedRules, confirmation: KeyConfirmation) => Promise<void>,
): Promise<AppliedRules & KeyConfirmation & { server: string }> {
  const replicas = resolveReplicas(flags);
  const decisionsRetention = resolveRetention(flags);
  const signer = adminSigner();
  const nc = await connectNats(resolveServers(flags), "arbiter-cli");
  try {
    reportServer(flags, nc);
    const confirmation = await confirmSigner(nc, flags, signer);
    const store = await openJetStreamStore(nc, {
      prefix: resolvePrefix(flags),
      replicas,
      ...(decisionsRetention ? { decisionsRetention } : {}),
    }).catch((err: unknown) => {
      throw onServer(nc, namingReplicas(err, flags));
    });
    const changed = describeRetentionChange(store.names.decisionsStream, store.decisionsRetention);
    if (changed) process.stderr.write(`arbiter: ${changed}\n`);
    const unfiltered = describeUnfilteredIndexConsumer(store.unfilteredIndexConsumer);
    if (unfiltered) process.stderr.write(`arbiter: ${unfiltered}\n`);
    const admin = createRulesAdmin({ store, signer, adminKeys: resolveAdminKeys(flags.adminKeys) });
    const applied = await body(admin);
    await written?.(nc, applied, confirmation);
    return { ...applied, ...confirmation, server: serverOf(nc) };
  } finally {
    await nc.close();
  }
}

/**
 * A store error about the replica count, naming the flag or variable that set it
 * (`replicas 3: …` becomes `--replicas 3: …`).
 */
function namingReplicas(err: unknown, flags: RulesFlags): unknown {
  if (!isArbiterError(err, ErrorCode.InvalidConfig) || !err.message.startsWith("replicas ")) return err;
  const source = flags.replicas !== undefined ? "--replicas" : "ARBITER_REPLICAS";
  return new ArbiterError(ErrorCode.InvalidConfig, `${source}${err.message.slice("replicas".length)}`, {
    cause: err,
  });
}

/** An unavailable store that does not say which server it was asked on, with the server named. */
function onServer(nc: NatsConnection, err: unknown): unknown {
  const server = serverOf(nc);
  if (!isArbiterError(err, ErrorCode.StoreUnavailable) || err.message.includes(server)) return err;
  return new ArbiterError(err.code, `NATS server ${server}: ${err.message}`, { cause: err });
}

/** Whose admin keys a read folded the rules with. */
export type KeysFrom = "workers" | "configured";

/**
 * Reads the rules as the workers fold them, creating nothing: with the keys the running workers
 * accept when any answers, else the configured admin keys and the local key of `arbiter up`.
 * Throws INVALID_CONFIG when neither is there: which events count could then not be told.
 */
export async function read<T>(
  flags: RulesFlags,
  body: (
    admin: RulesAdmin,
    server: string,
    keysFrom: KeysFrom,
    store: ArbiterStore,
    reading: { readonly adminKeys: readonly string[]; readonly nc: NatsConnection },
  ) => Promise<T>,
): Promise<T> {
  const nc = await connectNats(resolveServers(flags), "arbiter-cli");
  try {
    reportServer(flags, nc);
    const store = await openExistingStore(nc, flags);
    const workers = await askWorkers(nc, store.names.statusSubject);
    if (workers.length > 0) {
      const adminKeys = [...new Set(workers.flatMap((w) => w.adminKeys))];
      return await body(createRulesAdmin({ store, adminKeys }), serverOf(nc), "workers", store, {
        adminKeys,
        nc,
      });
    }
    const local = process.env["ARBITER_ADMIN_SEED"] || localAdminSeed(false);
    const adminKeys = resolveAdminKeys(flags.adminKeys, local ? adminSigner() : undefined);
    if (adminKeys.length === 0) {
      throw new ArbiterError(
        ErrorCode.InvalidConfig,
        `cannot tell which rule events the workers apply: no worker answered on ${store.names.statusSubject} at ${serverOf(nc)}, and no admin key is configured (--admin-keys, ARBITER_ADMIN_KEYS, ARBITER_ADMIN_SEED, or the local key of \`arbiter up\` in ${arbiterHome()})`,
      );
    }
    return await body(createRulesAdmin({ store, adminKeys }), serverOf(nc), "configured", store, {
      adminKeys,
      nc,
    });
  } finally {
    await nc.close();
  }
}

/** The options of the read-only commands, which create nothing (so take no `--replicas`). */
export const connectionOptions = (command: Command) =>
  command
    .option("--servers <urls>", SERVERS_HELP)
    .option("--prefix <prefix>", "stream/subject/bucket prefix (env ARBITER_PREFIX)")
    .option("--admin-keys <keys>", "admin public keys whose events count (env ARBITER_ADMIN_KEYS)")
    .option("-v, --verbose", "say on stderr which NATS server was used")
    .option("--json", "print the result as JSON");

/** The options of the commands that write, and create the streams on first use. */
export const changeConnectionOptions = (command: Command) =>
  connectionOptions(
    retentionOptions(
      command.option(
        "--replicas <n>",
        "replicas for streams created on first use: 1, 3 or 5 (env ARBITER_REPLICAS)",
      ),
    ),
  );

/** The options of a change from its flags (`--expect-revision`, `--reason`). */
export const changeOptions = (flags: RulesFlags) => ({
  ...(flags.expectRevision === undefined
    ? {}
    : { expectedRevision: parseIntegerFlag(flags.expectRevision, "--expect-revision", { min: 0 }) }),
  ...(flags.reason ? { reason: flags.reason } : {}),
});

/** The help of `--wait` on a command that writes a rules revision. */
const WAIT_HELP =
  "return only once every live worker serves the new revision and every override it causes is published; report how long that took; exit 5 when no worker answers or one is behind at --wait-timeout, 4 when one's rules history does not chain";
/** The help of `--wait-timeout`. */
const WAIT_TIMEOUT_HELP = "longest --wait (500ms, 30s, 2m; default 30s)";

function rulesWaitHook(flags: RulesFlags) {
  const prefix = resolvePrefix(flags);
  return waitHook(flags, prefix, resourceNames(prefix).statusSubject);
}

/** `arbiter rules apply|show|history|rollback`. */
export function rulesCommand(): Command {
  const rules = new Command("rules").description("change and inspect the event-sourced rules");

  changeConnectionOptions(
    rules
      .command("apply")
      .description(
        "replace the rules with FILE (YAML or JSON; - for stdin), signed with ARBITER_ADMIN_SEED; refused when the workers do not accept that key",
      )
      .argument("<file>", "rules document")
      .option("--expect-revision <n>", "fail unless the rules are still at revision N")
      .option("--reason <text>", "why, recorded in the event")
      .option("--wait", WAIT_HELP)
      .option("--wait-timeout <duration>", WAIT_TIMEOUT_HELP),
  ).action(async (file: string, flags: RulesFlags) => {
    const document = readRulesFile(file);
    const options = changeOptions(flags);
    const wait = rulesWaitHook(flags);
    const result = await change(
      flags,
      (admin) => wait.writing(() => admin.apply(document, options)),
      wait.written,
    );
    const enforced = wait.enforced();
    emit(
      flags.json === true,
      { ...result, ...enforced },
      () =>
        `rules applied at revision ${result.revision} of deployment ${result.deployment} (${document.rules.length} rules, default ${document.default}); ${describeConfirmation(result)}${enforced ? `\n${describeEnforcement(enforced)}` : ""}`,
    );
  });

  connectionOptions(
    rules
      .command("show")
      .description(
        "print the rules document the workers enforce at a revision (default: the latest), and whether that revision's event was rejected",
      )
      .option("--revision <n>", "revision to show"),
  ).action(async (flags: RulesFlags) => {
    const revision = parseOptionalIntegerFlag(flags.revision, "--revision", { min: 0 });
    const shown = await read(flags, async (admin, server, keysFrom) => {
      const state = await admin.stateAt(revision);
      const history = await admin.history();
      const event = history.find((e) => e.revision === state.revision);
      return {
        server,
        keysFrom,
        deployment: state.deployment,
        revision: state.revision,
        latestRevision: history.at(-1)?.revision ?? 0,
        documentRevision: state.documentRevision,
        latestRejected:
          event && !event.applied
            ? { revision: event.revision, reason: event.rejection ?? "rejected" }
            : null,
        document: state.document,
      };
    });
    emit(flags.json === true, shown, () => {
      const by =
        shown.keysFrom === "workers"
          ? "by the workers"
          : "under the configured admin keys (no worker answered)";
      const rejected = shown.latestRejected
        ? `# revision ${shown.latestRejected.revision} was REJECTED ${by}: ${shown.latestRejected.reason}\n`
        : "";
      // An earlier revision is history: say so, so it is not read as what the workers enforce now.
      const past = shown.revision < shown.latestRevision;
      const at = past
        ? `# revision ${shown.revision} (the latest is ${shown.latestRevision})`
        : `# revision ${shown.revision}`;
      if (shown.document === null) {
        const none = past
          ? "no rules were in force (every request was denied)"
          : "no rules in force (every request is denied)";
        return `${rejected}${at}: ${none}`;
      }
      return `${rejected}${at}: the rules of revision ${shown.documentRevision} ${past ? "were" : "are"} in force\n${serializeRulesDocument(shown.document, "yaml").trimEnd()}`;
    });
  });

  connectionOptions(
    rules
      .command("history")
      .description(
        "list every rule event: whether workers apply it, its hash and the hash it names before it, and where the chain breaks",
      ),
  ).action(async (flags: RulesFlags) => {
    const { history, snapshotProblem } = await read(flags, async (admin) => ({
      history: await admin.history(),
      snapshotProblem: await admin.snapshotProblem(),
    }));
    // Refill detection needs the snapshot: a shorter copy of the same chain looks whole on its own.
    if (snapshotProblem !== null) {
      process.stderr.write(
        `arbiter: the rules stream does not hold the snapshot's head: ${snapshotProblem}\n`,
      );
    }
    const short = (hash: string | null) => (hash === null ? "-" : hash.slice(0, 12));
    const line = (cells: readonly string[]) =>
      cells
        .map((cell, i) => cell.padEnd([8, 8, 18, 24, 56, 12, 12][i] ?? 0))
        .join("  ")
        .trimEnd();
    emit(flags.json === true, history, () =>
      history.length === 0
        ? "no rule events yet"
        : [
            line(["REVISION", "STATUS", "TYPE", "AT", "ACTOR", "HASH", "PREV", "REASON"]),
            ...history.map((e) => {
              const status = e.broken ? "BROKEN" : e.applied ? "applied" : "REJECTED";
              const row = line([
                String(e.revision).padStart(8),
                status,
                e.type ?? "?",
                e.at ?? "?",
                e.actor ?? "?",
                short(e.hash),
                short(e.prev),
                e.reason ?? "",
              ]);
              const why = e.broken
                ? `\n          the chain breaks here: ${e.broken}`
                : e.rejection
                  ? `\n          ${e.rejection}`
                  : "";
              return row + why;
            }),
          ].join("\n"),
    );
  });

  changeConnectionOptions(
    rules
      .command("rollback")
      .description("restore the rules of an earlier revision, as a new event")
      .requiredOption("--to <n>", "revision whose rules to restore")
      .option("--expect-revision <n>", "fail unless the rules are still at revision N")
      .option("--reason <text>", "why, recorded in the event")
      .option("--wait", WAIT_HELP)
      .option("--wait-timeout <duration>", WAIT_TIMEOUT_HELP),
  ).action(async (flags: RulesFlags) => {
    const to = parseIntegerFlag(flags.to ?? "", "--to", { min: 0 });
    const options = changeOptions(flags);
    const wait = rulesWaitHook(flags);
    const result = await change(
      flags,
      (admin) => wait.writing(() => admin.rollback(to, options)),
      wait.written,
    );
    const enforced = wait.enforced();
    emit(
      flags.json === true,
      { ...result, restored: to, ...enforced },
      () =>
        `rules of revision ${to} restored as revision ${result.revision} of deployment ${result.deployment}; ${describeConfirmation(result)}${enforced ? `\n${describeEnforcement(enforced)}` : ""}`,
    );
  });

  return rules;
}
