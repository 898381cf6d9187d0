import { readFileSync } from "node:fs";
import { ArbiterError, ErrorCode } from "@arbiter/protocol";
import { parseRulesDocument, serializeRulesDocument } from "@arbiter/rules";
import { type ArbiterStore, createRulesAdmin, openJetStreamStore, type RulesAdmin } from "@arbiter/store";
import type { Signer } from "@arbiter/trust";
import { createSigner } from "@arbiter/trust";
import type { NatsConnection } from "@nats-io/nats-core";
import { Command } from "commander";
import {
  adminSigner,
  type ConnectionFlags,
  connectNats,
  localAdminSeed,
  resolveAdminKeys,
  resolvePrefix,
  resolveReplicas,
  resolveServers,
} from "../context.js";
import { emit } from "../output.js";

interface RulesFlags extends ConnectionFlags {
  adminKeys?: string;
  expectRevision?: string;
  revision?: string;
  reason?: string;
  to?: string;
}

/** Reads a rules file (`-` for stdin) and validates it; errors name the rule and position. */
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
  return parseRulesDocument(text, { source: file === "-" ? "<stdin>" : file });
}

/** Runs `body` with a rules admin on a fresh connection, closing it afterwards. */
async function withRulesAdmin<T>(
  flags: RulesFlags,
  write: boolean,
  body: (admin: RulesAdmin, store: ArbiterStore) => Promise<T>,
): Promise<T> {
  let signer: Signer | undefined;
  if (write) signer = adminSigner();
  else {
    const local = process.env["ARBITER_ADMIN_SEED"] || localAdminSeed(false);
    signer = local ? createSigner(local, "O") : undefined;
  }
  const nc: NatsConnection = await connectNats(resolveServers(flags), "arbiter-cli");
  try {
    const store = await openJetStreamStore(nc, {
      prefix: resolvePrefix(flags),
      replicas: resolveReplicas(flags),
    });
    const admin = createRulesAdmin({
      store,
      ...(signer ? { signer } : {}),
      adminKeys: resolveAdminKeys(flags.adminKeys),
    });
    return await body(admin, store);
  } finally {
    await nc.close();
  }
}

function revisionFlag(value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) {
    throw new ArbiterError(
      ErrorCode.InvalidConfig,
      `${flag} ${JSON.stringify(value)}: expected a revision number (0 or more)`,
    );
  }
  return n;
}

const connectionOptions = (command: Command) =>
  command
    .option("--servers <urls>", "NATS server URLs, comma-separated (env NATS_URL)")
    .option("--replicas <n>", "replicas for streams created on first use (env ARBITER_REPLICAS)")
    .option("--prefix <prefix>", "stream/subject/bucket prefix (env ARBITER_PREFIX)")
    .option("--admin-keys <keys>", "admin public keys whose events count (env ARBITER_ADMIN_KEYS)")
    .option("--json", "print the result as JSON");

/** `arbiter rules apply|show|history|rollback`. */
export function rulesCommand(): Command {
  const rules = new Command("rules").description("change and inspect the event-sourced rules");

  connectionOptions(
    rules
      .command("apply")
      .description("replace the rules with FILE (YAML or JSON; - for stdin), signed with ARBITER_ADMIN_SEED")
      .argument("<file>", "rules document")
      .option("--expect-revision <n>", "fail unless the rules are still at revision N")
      .option("--reason <text>", "why, recorded in the event"),
  ).action(async (file: string, flags: RulesFlags) => {
    const document = readRulesFile(file);
    const expectedRevision = revisionFlag(flags.expectRevision, "--expect-revision");
    const result = await withRulesAdmin(flags, true, (admin) =>
      admin.apply(document, {
        ...(expectedRevision === undefined ? {} : { expectedRevision }),
        ...(flags.reason ? { reason: flags.reason } : {}),
      }),
    );
    emit(
      flags.json === true,
      result,
      () =>
        `rules applied at revision ${result.revision} (${document.rules.length} rules, default ${document.default})`,
    );
  });

  connectionOptions(
    rules
      .command("show")
      .description("print the rules document in force at a revision (default: the latest)")
      .option("--revision <n>", "revision to show"),
  ).action(async (flags: RulesFlags) => {
    const revision = revisionFlag(flags.revision, "--revision");
    const state = await withRulesAdmin(flags, false, (admin) => admin.stateAt(revision));
    emit(
      flags.json === true,
      { revision: state.revision, documentRevision: state.documentRevision, document: state.document },
      () =>
        state.document === null
          ? `# revision ${state.revision}: no rules applied yet (every request is denied)`
          : `# revision ${state.revision}\n${serializeRulesDocument(state.document, "yaml").trimEnd()}`,
    );
  });

  connectionOptions(
    rules.command("history").description("list every rule event and whether workers apply it"),
  ).action(async (flags: RulesFlags) => {
    const history = await withRulesAdmin(flags, false, (admin) => admin.history());
    emit(flags.json === true, history, () =>
      history.length === 0
        ? "no rule events yet"
        : history
            .map(
              (e) =>
                `${String(e.revision).padStart(5)}  ${e.applied ? "applied " : "REJECTED"}  ${e.type ?? "?"}  ${e.at ?? "?"}  ${e.actor ?? "?"}${e.reason ? `  ${e.reason}` : ""}${e.rejection ? `\n       ${e.rejection}` : ""}`,
            )
            .join("\n"),
    );
  });

  connectionOptions(
    rules
      .command("rollback")
      .description("restore the rules of an earlier revision, as a new event")
      .requiredOption("--to <n>", "revision whose rules to restore")
      .option("--expect-revision <n>", "fail unless the rules are still at revision N")
      .option("--reason <text>", "why, recorded in the event"),
  ).action(async (flags: RulesFlags) => {
    const to = revisionFlag(flags.to, "--to")!;
    const expectedRevision = revisionFlag(flags.expectRevision, "--expect-revision");
    const result = await withRulesAdmin(flags, true, (admin) =>
      admin.rollback(to, {
        ...(expectedRevision === undefined ? {} : { expectedRevision }),
        ...(flags.reason ? { reason: flags.reason } : {}),
      }),
    );
    emit(
      flags.json === true,
      { ...result, restored: to },
      () => `rules of revision ${to} restored as revision ${result.revision}`,
    );
  });

  return rules;
}
