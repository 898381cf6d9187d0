import { createSigner } from "@arbiter/trust";
import { createWorker, parseWorkerConfig } from "@arbiter/worker";
import { Command } from "commander";
import {
  type ConnectionFlags,
  connectNats,
  localAdminSeed,
  resolveAdminKeys,
  resolvePrefix,
  resolveReplicas,
  resolveServers,
} from "../context.js";
import { createLogger, untilSignal } from "../lifecycle.js";
import { emit } from "../output.js";

interface WorkerFlags extends ConnectionFlags {
  policyTopic?: string;
  changesTopic?: string;
  name?: string;
  adminKeys?: string;
  maxPayload?: string;
  maxQueued?: string;
}

/** `arbiter worker`: one decision worker in the queue group, until SIGINT/SIGTERM. */
export function workerCommand(): Command {
  return new Command("worker")
    .description("run a decision worker: answer policy requests, record decisions, follow the rules")
    .option("--servers <urls>", "NATS server URLs, comma-separated (env NATS_URL)")
    .option(
      "--policy-topic <topic>",
      "policy request topic (env WASMCLOUD_POLICY_TOPIC)",
      process.env["WASMCLOUD_POLICY_TOPIC"],
    )
    .option(
      "--changes-topic <topic>",
      "topic for overrides of cached decisions (env WASMCLOUD_POLICY_CHANGES_TOPIC)",
      process.env["WASMCLOUD_POLICY_CHANGES_TOPIC"],
    )
    .option("--replicas <n>", "replicas for streams this worker creates (env ARBITER_REPLICAS)")
    .option("--prefix <prefix>", "stream/subject/bucket prefix (env ARBITER_PREFIX)")
    .option("--name <id>", "worker id recorded in decisions (default: host-pid-random)")
    .option("--admin-keys <keys>", "admin public keys (O…) whose rule events count (env ARBITER_ADMIN_KEYS)")
    .option("--max-payload <bytes>", "largest accepted request in bytes", "1048576")
    .option(
      "--max-queued <n>",
      "requests waiting to be decided beyond which new ones are dropped unanswered (hosts fail closed)",
      "10000",
    )
    .option("--json", "print the ready line as JSON")
    .action(async (flags: WorkerFlags) => {
      const log = createLogger("arbiter-worker");
      const adminKeys = resolveAdminKeys(flags.adminKeys);
      if (adminKeys.length === 0) {
        const local = localAdminSeed(false);
        if (local) {
          adminKeys.push(createSigner(local, "O").publicKey);
          log.warn("no ARBITER_ADMIN_KEYS: accepting the local admin key of `arbiter up`");
        }
      }
      const servers = resolveServers(flags);
      const config = parseWorkerConfig({
        ...(flags.name ? { id: flags.name } : {}),
        ...(flags.policyTopic ? { policyTopic: flags.policyTopic } : {}),
        ...(flags.changesTopic ? { changesTopic: flags.changesTopic } : {}),
        ...(process.env["ARBITER_WORKER_SEED"] ? { workerSeed: process.env["ARBITER_WORKER_SEED"] } : {}),
        prefix: resolvePrefix(flags),
        replicas: resolveReplicas(flags),
        adminKeys,
        maxPayloadBytes: Number(flags.maxPayload),
        maxQueuedRequests: Number(flags.maxQueued),
      });
      log.info({ servers }, "connecting to NATS (retrying until it answers)");
      const name = `arbiter-worker${flags.name ? `-${flags.name}` : ""}`;
      const nc = await connectNats(servers, name, true);
      const storeNc = await connectNats(servers, `${name}-store`, true);
      const worker = createWorker({ nc, storeNc, logger: log, config });
      await worker.start();
      emit(
        flags.json === true,
        {
          worker: worker.id,
          publicKey: worker.publicKey,
          revision: worker.revision,
          status: worker.status,
          servers,
        },
        () =>
          `worker ${worker.id} ${worker.status} at rules revision ${worker.revision} (${servers.join(",")})`,
      );
      await untilSignal(async () => {
        await worker.stop();
        await Promise.allSettled([nc.drain(), storeNc.drain()]);
      }, log);
    });
}
