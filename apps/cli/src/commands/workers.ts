import { ArbiterError, ErrorCode } from "@arbiter/protocol";
import { isEnrolled } from "@arbiter/rules";
import type { RulesAdmin } from "@arbiter/store";
import { createSigner, decodePublicKey } from "@arbiter/trust";
import { Command } from "commander";
import { emit } from "../output.js";
import {
  change,
  changeConnectionOptions,
  changeOptions,
  connectionOptions,
  describeConfirmation,
  type RulesFlags,
  read,
} from "./rules.js";

interface WorkersFlags extends RulesFlags {
  name?: string;
}

/**
 * Throws INVALID_USAGE, writing nothing, when the key is already as asked (enrolled, or not
 * enrolled), by the rules as this admin folds them: every worker skips such an event, so writing it
 * would only add a rejected revision while the command said it enrolled or removed the key.
 */
async function refuseUnchanged(admin: RulesAdmin, key: string, action: "enroll" | "remove"): Promise<void> {
  const { workers } = await admin.stateAt();
  const periods = workers.filter((w) => w.publicKey === key);
  const enrolled = isEnrolled(workers, key);
  if (action === "enroll" && enrolled) {
    const since = periods.find((w) => w.to === null)?.from;
    throw new ArbiterError(
      ErrorCode.InvalidUsage,
      `worker key ${key} is enrolled already (since revision ${since}); nothing was written`,
    );
  }
  if (action === "remove" && !enrolled) {
    const removedAt = periods.at(-1)?.to;
    throw new ArbiterError(
      ErrorCode.InvalidUsage,
      `worker key ${key} is not enrolled${removedAt == null ? "" : ` (removed at revision ${removedAt})`}; nothing was written`,
    );
  }
}

/**
 * Checks the KEY argument before anything is asked of NATS. Throws INVALID_KEY for anything but a
 * worker public key: for a worker's seed (what an operator holds as ARBITER_WORKER_SEED) it names
 * the public key to pass and does not print the seed back; otherwise it says what is wrong.
 */
function workerKeyArgument(key: string): string {
  const trimmed = key.trim();
  if (trimmed.startsWith("S")) {
    let publicKey: string | undefined;
    try {
      publicKey = createSigner(trimmed, "N").publicKey;
    } catch {
      publicKey = undefined;
    }
    if (publicKey !== undefined)
      throw new ArbiterError(
        ErrorCode.InvalidKey,
        `the key given is a worker's seed (SN…), which is secret: pass its public key ${publicKey}`,
      );
  }
  try {
    if (trimmed.length !== 56) throw new Error(`${trimmed.length} characters, not 56`);
    decodePublicKey(trimmed, "N");
  } catch (err) {
    const shown = trimmed.startsWith("S") ? `${trimmed.slice(0, 2)}…` : trimmed;
    throw new ArbiterError(
      ErrorCode.InvalidKey,
      `${JSON.stringify(shown)} is not a worker public key (N…, 56 characters, as \`arbiter trust keygen worker\` prints it): ${(err as Error).message}`,
      { cause: err },
    );
  }
  return trimmed;
}

/** `arbiter workers enroll|remove|list`: which worker keys may sign decisions. */
export function workersCommand(): Command {
  const workers = new Command("workers").description(
    "enroll and remove the worker keys whose decisions verify (signed events in the rules stream)",
  );

  changeConnectionOptions(
    workers
      .command("enroll")
      .description(
        "enroll a worker public key (N…): a worker with this key may serve, and the decisions it signs from now on verify",
      )
      .argument("<key>", "the worker's public key (N…; `arbiter trust keygen worker` makes a key pair)")
      .option("--name <name>", "a name for people, recorded in the event")
      .option("--expect-revision <n>", "fail unless the rules are still at revision N")
      .option("--reason <text>", "why, recorded in the event"),
  ).action(async (argument: string, flags: WorkersFlags) => {
    const key = workerKeyArgument(argument);
    const options = { ...changeOptions(flags), ...(flags.name ? { name: flags.name } : {}) };
    const result = await change(flags, async (admin) => {
      await refuseUnchanged(admin, key, "enroll");
      return admin.enrollWorker(key, options);
    });
    emit(
      flags.json === true,
      { ...result, publicKey: key },
      () =>
        `worker key ${key} enrolled at revision ${result.revision} of deployment ${result.deployment}; ${describeConfirmation(result)}`,
    );
  });

  changeConnectionOptions(
    workers
      .command("remove")
      .description(
        "remove a worker key: decisions it signs at later revisions no longer verify, a running worker with it stops answering, and one with it no longer starts",
      )
      .argument("<key>", "the worker's public key (N…)")
      .option("--expect-revision <n>", "fail unless the rules are still at revision N")
      .option("--reason <text>", "why, recorded in the event"),
  ).action(async (argument: string, flags: WorkersFlags) => {
    const key = workerKeyArgument(argument);
    const result = await change(flags, async (admin) => {
      await refuseUnchanged(admin, key, "remove");
      return admin.removeWorker(key, changeOptions(flags));
    });
    emit(
      flags.json === true,
      { ...result, publicKey: key },
      () =>
        `worker key ${key} removed at revision ${result.revision} of deployment ${result.deployment}; ${describeConfirmation(result)}`,
    );
  });

  connectionOptions(
    workers
      .command("list")
      .description("list the enrolled worker keys, and the ones removed, with their revisions"),
  ).action(async (flags: WorkersFlags) => {
    const listed = await read(flags, async (admin, server) => {
      const state = await admin.stateAt();
      return {
        server,
        deployment: state.deployment,
        revision: state.revision,
        workers: state.workers.map((w) => ({
          ...w,
          enrolled: w.to === null && isEnrolled(state.workers, w.publicKey),
        })),
      };
    });
    emit(flags.json === true, listed, () =>
      listed.workers.length === 0
        ? `no worker keys enrolled in ${listed.deployment === null ? "this rules stream (no deployment yet)" : `deployment ${listed.deployment}`}`
        : [
            `# deployment ${listed.deployment}, revision ${listed.revision}`,
            `${"PUBLIC KEY".padEnd(56)}  ${"STATE".padEnd(8)}  ${"FROM".padEnd(6)}  ${"TO".padEnd(6)}  NAME`,
            ...listed.workers.map((w) =>
              `${w.publicKey}  ${(w.enrolled ? "enrolled" : "removed").padEnd(8)}  ${`r${w.from}`.padEnd(6)}  ${(w.to === null ? "-" : `r${w.to}`).padEnd(6)}  ${w.name ?? ""}`.trimEnd(),
            ),
          ].join("\n"),
    );
  });

  return workers;
}
