import { setTimeout as delay } from "node:timers/promises";
import { WORKER_INBOX_PREFIX } from "@arbiter/embedded-nats";
import { ArbiterError, ErrorCode, isArbiterError } from "@arbiter/protocol";
import { createSigner } from "@arbiter/trust";
import { createWorker, parseWorkerConfig, type WorkerConfig } from "@arbiter/worker";
import type { NatsConnection } from "@nats-io/nats-core";
import { Command } from "commander";
import type { Logger } from "pino";
import {
  type ConnectionFlags,
  connectNats,
  localAdminSeed,
  localAdminSeedFile,
  readLocalState,
  resolveAdminKeys,
  resolveChangesPerHost,
  resolvePrefix,
  resolveReplicas,
  resolveServers,
  resolveWorkerKeys,
  SERVERS_HELP,
} from "../context.js";
import { createLogger, drainOrClose, reportConnection, untilSignal } from "../lifecycle.js";
import { emit } from "../output.js";

interface WorkerFlags extends ConnectionFlags {
  policyTopic?: string;
  changesTopic?: string;
  name?: string;
  adminKeys?: string;
  maxPayload?: string;
  maxQueued?: string;
  maxQueuedBytes?: string;
  scanPartSize?: string;
  indexMirrorMaxKeys?: string;
  indexMirrorMaxBytes?: string;
  inboxPrefix?: string;
  natsInboxPrefix?: string;
  onLogOutage?: string;
  requestSignatures?: string;
  clusterIssuers?: string;
  maxTokenAge?: string;
  deployment?: string;
  workerKeys?: string;
  allowUnenrolled?: boolean;
  changesPerHost?: boolean;
  lattices?: string;
  hostTimeout?: string;
}

/** Where each worker setting comes from on the command line, for messages that name it. */
const SETTING_SOURCES: Readonly<Record<string, string>> = {
  id: "--name",
  policyTopic: "--policy-topic (WASMCLOUD_POLICY_TOPIC)",
  changesTopic: "--changes-topic (WASMCLOUD_POLICY_CHANGES_TOPIC)",
  changesPerHost: "--changes-per-host (ARBITER_CHANGES_PER_HOST)",
  prefix: "--prefix (ARBITER_PREFIX)",
  replicas: "--replicas (ARBITER_REPLICAS)",
  adminKeys: "--admin-keys (ARBITER_ADMIN_KEYS)",
  workerSeed: "ARBITER_WORKER_SEED",
  maxPayloadBytes: "--max-payload",
  maxQueuedRequests: "--max-queued",
  maxQueuedBytes: "--max-queued-bytes",
  scanPartSize: "--scan-part-size (ARBITER_SCAN_PART_SIZE)",
  indexMirrorMaxKeys: "--index-mirror-max-keys (ARBITER_INDEX_MIRROR_MAX_KEYS)",
  indexMirrorMaxBytes: "--index-mirror-max-bytes (ARBITER_INDEX_MIRROR_MAX_BYTES)",
  inboxPrefixes: "--inbox-prefix (ARBITER_INBOX_PREFIXES)",
  onLogOutage: "--on-log-outage (ARBITER_ON_LOG_OUTAGE)",
  requestSignatures: "--request-signatures (ARBITER_REQUEST_SIGNATURES)",
  clusterIssuers: "--cluster-issuers (WASMCLOUD_CLUSTER_ISSUERS)",
  maxTokenAgeMs: "--max-token-age (ARBITER_MAX_TOKEN_AGE)",
  deployment: "--deployment (ARBITER_DEPLOYMENT)",
  workerKeys: "--worker-keys (ARBITER_WORKER_KEYS)",
  lattices: "--lattices (ARBITER_LATTICES)",
  hostTimeoutMs: "--host-timeout (ARBITER_HOST_TIMEOUT)",
};

const SIGNATURE_MODES = ["off", "verify-if-present", "required"] as const;

/** Longest pause between attempts to reach NATS before the worker's first connection. */
const MAX_CONNECT_PAUSE_MS = 5000;

/** `arbiter worker`: one decision worker in the queue group, until SIGINT/SIGTERM. */
export function workerCommand(): Command {
  return new Command("worker")
    .summary("run a decision worker: answer policy requests, record decisions, follow the rules")
    .description(
      "run a decision worker: answer policy requests, record decisions, follow the rules; it signs its decisions with ARBITER_WORKER_SEED (SN…, enrolled with `arbiter workers enroll`; without it a key is made for the run, which is not enrolled)",
    )
    .option("--servers <urls>", SERVERS_HELP)
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
    .option(
      "--changes-per-host",
      "publish each override on its host's own subject, <changes topic>.<host key>, for hosts started with that --policy-changes-topic; a host key that is no subject token gets its overrides on the changes topic; every worker must agree (env ARBITER_CHANGES_PER_HOST=true)",
    )
    .option(
      "--no-changes-per-host",
      "publish every override on the changes topic, whatever ARBITER_CHANGES_PER_HOST says",
    )
    .option("--replicas <n>", "replicas for streams this worker creates (env ARBITER_REPLICAS)")
    .option("--prefix <prefix>", "stream/subject/bucket prefix (env ARBITER_PREFIX)")
    .option("--name <id>", "worker id recorded in decisions (default: host-pid-random)")
    .option("--admin-keys <keys>", "admin public keys (O…) whose rule events count (env ARBITER_ADMIN_KEYS)")
    .option("--max-payload <bytes>", "largest accepted request in bytes", "1048576")
    .option(
      "--max-queued <n>",
      "requests waiting to be decided or recorded beyond which new ones are dropped unanswered (hosts fail closed)",
      "10000",
    )
    .option(
      "--max-queued-bytes <bytes>",
      "bytes of requests waiting to be decided, and of records waiting for the decision log, beyond which new ones are dropped unanswered too (hosts fail closed)",
      "268435456",
    )
    .option(
      "--inbox-prefix <prefixes>",
      "reply subject prefixes answered, comma-separated (env ARBITER_INBOX_PREFIXES; default _INBOX.,_R_.: hosts' inboxes, and their replies through a service import)",
    )
    .option(
      "--on-log-outage <mode>",
      "when the decision log fails: silent (no answer; hosts deny without caching) or deny (answer a denial, which hosts cache for their lifetime) (env ARBITER_ON_LOG_OUTAGE)",
    )
    .option(
      "--request-signatures <mode>",
      "signed policy requests (Wasmcloud-Invocation header): off (default), verify-if-present (deny a bad signature) or required (also deny unsigned requests) (env ARBITER_REQUEST_SIGNATURES)",
    )
    .option(
      "--cluster-issuers <keys>",
      "cluster keys (C…) whose signed requests are believed, comma-separated (env WASMCLOUD_CLUSTER_ISSUERS)",
    )
    .option(
      "--max-token-age <seconds>",
      "oldest signed request accepted, by its token's iat; token ids are remembered as long (env ARBITER_MAX_TOKEN_AGE; default 60)",
    )
    .option(
      "--deployment <id>",
      "the deployment this worker belongs to: a rules stream or snapshot of another is refused (env ARBITER_DEPLOYMENT; default: the one the genesis event names)",
    )
    .option(
      "--worker-keys <keys>",
      "worker public keys (N…) enrolled by configuration, comma-separated (env ARBITER_WORKER_KEYS)",
    )
    .option(
      "--allow-unenrolled",
      "serve even though this worker's key is not enrolled (its decisions will not verify; logged loudly) (env ARBITER_ALLOW_UNENROLLED=true)",
    )
    .option(
      "--lattices <names>",
      "wasmCloud lattices whose host lifecycle events this worker follows to prune stopped hosts, comma-separated (env ARBITER_LATTICES; default default)",
    )
    .option(
      "--host-timeout <seconds>",
      "a host whose heartbeat was seen and has been missing this long is pinged and, silent, pruned (env ARBITER_HOST_TIMEOUT; default 70: two 30 s heartbeats and slack, as wadm)",
    )
    .option(
      "--nats-inbox-prefix <prefix>",
      `this worker's own inbox prefix on NATS, which the shipped permissions reserve for workers (env NATS_INBOX_PREFIX; default ${WORKER_INBOX_PREFIX})`,
    )
    .option(
      "--scan-part-size <n>",
      "entries per part of a rules revision's re-evaluation: a larger active index is split across the workers, when another worker waits for parts (env ARBITER_SCAN_PART_SIZE; default 20000)",
    )
    .option(
      "--index-mirror-max-keys <n>",
      "keys of the active index this worker mirrors in memory at most (about 3 KB an entry), so that a re-evaluation reads no entry from the server; a larger index is read from the server; 0 turns the mirror off (env ARBITER_INDEX_MIRROR_MAX_KEYS; default 200000)",
    )
    .option(
      "--index-mirror-max-bytes <bytes>",
      "bytes of the active index's stream this worker mirrors at most; a larger index is read from the server (env ARBITER_INDEX_MIRROR_MAX_BYTES; default 268435456)",
    )
    .option("--json", "print the ready line as JSON")
    .action(async (flags: WorkerFlags) => {
      const log = createLogger("arbiter-worker");
      const servers = resolveServers(flags);
      const config = workerConfig(flags, log, servers);
      const name = `arbiter-worker${flags.name ? `-${flags.name}` : ""}`;
      const inboxPrefix = flags.natsInboxPrefix || process.env["NATS_INBOX_PREFIX"] || WORKER_INBOX_PREFIX;
      await waitForNats(servers, name, log, inboxPrefix);
      const nc = await connectNats(servers, name, true, { inboxPrefix });
      const storeNc = await connectNats(servers, `${name}-store`, true, { inboxPrefix });
      reportConnection(nc, log);
      const worker = createWorker({ nc, storeNc, logger: log, config });
      try {
        await worker.start();
      } catch (err) {
        // Nothing may keep the process alive once the worker cannot start: it exits at once.
        await Promise.allSettled([nc.close(), storeNc.close()]);
        throw namingTheSetting(err);
      }
      const record = worker.statusRecord();
      const overridesOn =
        record.changesPerHost === true ? `${record.changesTopic}.<host key>` : `${record.changesTopic}`;
      emit(
        flags.json === true,
        {
          worker: worker.id,
          publicKey: worker.publicKey,
          deployment: record.deployment ?? null,
          revision: worker.revision,
          status: worker.status,
          reason: worker.health.reason,
          changesTopic: record.changesTopic ?? null,
          changesPerHost: record.changesPerHost ?? false,
          servers,
        },
        () =>
          `worker ${worker.id} ${worker.status} at rules revision ${worker.revision} (${servers.join(",")}), overrides on ${overridesOn}${worker.revision === 0 ? "; no rules were applied yet, so every request is denied until `arbiter rules apply`" : ""}`,
      );
      await untilSignal(async () => {
        await worker.stop();
        await Promise.allSettled([drainOrClose(nc), drainOrClose(storeNc)]);
      }, log);
    });
}

/** The worker's configuration from flags and environment; throws INVALID_CONFIG naming the flag or variable. */
function workerConfig(
  flags: WorkerFlags,
  log: Logger,
  servers: string[],
): ReturnType<typeof parseWorkerConfig> {
  const adminKeys = resolveAdminKeys(flags.adminKeys);
  if (adminKeys.length === 0) {
    const local = localAdminSeed(false);
    // The local key is a convenience for the local `up`: a worker pointed at another NATS must be told whose rules count.
    const elsewhere =
      Boolean(flags.servers || process.env["NATS_URL"]) && servers.join(",") !== readLocalState()?.url;
    if (local && elsewhere) {
      log.warn(
        `no ARBITER_ADMIN_KEYS: the local admin key of \`arbiter up\` (${localAdminSeedFile()}) is not accepted for NATS at ${servers.join(",")}, which is not that up's`,
      );
    } else if (local) {
      adminKeys.push(createSigner(local, "O").publicKey);
      log.warn("no ARBITER_ADMIN_KEYS: accepting the local admin key of `arbiter up`");
    }
  }
  const workerSeed = process.env["ARBITER_WORKER_SEED"];
  if (workerSeed) {
    try {
      createSigner(workerSeed, "N");
    } catch (err) {
      throw new ArbiterError(
        ErrorCode.InvalidConfig,
        `ARBITER_WORKER_SEED: not a worker seed (expected an nkeys host seed, SN…): ${(err as Error).message}`,
        { cause: err },
      );
    }
  }
  const inboxes = flags.inboxPrefix ?? process.env["ARBITER_INBOX_PREFIXES"];
  const onLogOutage = flags.onLogOutage ?? process.env["ARBITER_ON_LOG_OUTAGE"];
  if (onLogOutage !== undefined && onLogOutage !== "silent" && onLogOutage !== "deny") {
    throw new ArbiterError(
      ErrorCode.InvalidConfig,
      `${SETTING_SOURCES["onLogOutage"]} ${JSON.stringify(onLogOutage)}: expected silent or deny`,
    );
  }
  const signatures = flags.requestSignatures ?? (process.env["ARBITER_REQUEST_SIGNATURES"] || undefined);
  const requestSignatures = SIGNATURE_MODES.find((mode) => mode === signatures);
  if (signatures !== undefined && requestSignatures === undefined) {
    throw new ArbiterError(
      ErrorCode.InvalidConfig,
      `${SETTING_SOURCES["requestSignatures"]} ${JSON.stringify(signatures)}: expected ${SIGNATURE_MODES.join(", ")}`,
    );
  }
  const issuers = flags.clusterIssuers ?? process.env["WASMCLOUD_CLUSTER_ISSUERS"];
  const maxTokenAge = flags.maxTokenAge ?? (process.env["ARBITER_MAX_TOKEN_AGE"] || undefined);
  const deployment = flags.deployment ?? process.env["ARBITER_DEPLOYMENT"];
  const workerKeys = resolveWorkerKeys(flags.workerKeys);
  const allowEnv = process.env["ARBITER_ALLOW_UNENROLLED"];
  if (allowEnv !== undefined && allowEnv !== "" && allowEnv !== "true" && allowEnv !== "false") {
    throw new ArbiterError(
      ErrorCode.InvalidConfig,
      `ARBITER_ALLOW_UNENROLLED ${JSON.stringify(allowEnv)}: expected true or false`,
    );
  }
  const allowUnenrolled = flags.allowUnenrolled === true || allowEnv === "true";
  const perHostEnv = resolveChangesPerHost();
  const changesPerHost = flags.changesPerHost ?? perHostEnv;
  const lattices = flags.lattices ?? (process.env["ARBITER_LATTICES"] || undefined);
  const hostTimeout = flags.hostTimeout ?? (process.env["ARBITER_HOST_TIMEOUT"] || undefined);
  const scanPartSize = flags.scanPartSize ?? (process.env["ARBITER_SCAN_PART_SIZE"] || undefined);
  const mirrorMaxKeys =
    flags.indexMirrorMaxKeys ?? (process.env["ARBITER_INDEX_MIRROR_MAX_KEYS"] || undefined);
  const mirrorMaxBytes =
    flags.indexMirrorMaxBytes ?? (process.env["ARBITER_INDEX_MIRROR_MAX_BYTES"] || undefined);
  const config: WorkerConfig = {
    ...(flags.name ? { id: flags.name } : {}),
    ...(deployment ? { deployment } : {}),
    ...(workerKeys.length > 0 ? { workerKeys } : {}),
    ...(allowUnenrolled ? { allowUnenrolled } : {}),
    ...(changesPerHost ? { changesPerHost } : {}),
    ...(flags.policyTopic ? { policyTopic: flags.policyTopic } : {}),
    ...(flags.changesTopic ? { changesTopic: flags.changesTopic } : {}),
    ...(workerSeed ? { workerSeed } : {}),
    ...(inboxes !== undefined ? { inboxPrefixes: inboxes.split(",").map((p) => p.trim()) } : {}),
    ...(onLogOutage !== undefined ? { onLogOutage } : {}),
    ...(requestSignatures !== undefined ? { requestSignatures } : {}),
    ...(issuers !== undefined
      ? {
          clusterIssuers: issuers
            .split(",")
            .map((k) => k.trim())
            .filter((k) => k.length > 0),
        }
      : {}),
    ...(lattices !== undefined
      ? {
          lattices: lattices
            .split(",")
            .map((l) => l.trim())
            .filter((l) => l.length > 0),
        }
      : {}),
    ...(hostTimeout !== undefined
      ? { hostTimeoutMs: strictInteger(SETTING_SOURCES["hostTimeoutMs"]!, hostTimeout) * 1000 }
      : {}),
    ...(maxTokenAge !== undefined
      ? { maxTokenAgeMs: strictInteger(SETTING_SOURCES["maxTokenAgeMs"]!, maxTokenAge) * 1000 }
      : {}),
    prefix: resolvePrefix(flags),
    replicas: resolveReplicas(flags),
    adminKeys,
    maxPayloadBytes: strictInteger("--max-payload", flags.maxPayload ?? "1048576"),
    maxQueuedRequests: strictInteger("--max-queued", flags.maxQueued ?? "10000"),
    ...(flags.maxQueuedBytes !== undefined
      ? { maxQueuedBytes: strictInteger("--max-queued-bytes", flags.maxQueuedBytes) }
      : {}),
    ...(scanPartSize ? { scanPartSize: strictInteger(SETTING_SOURCES["scanPartSize"]!, scanPartSize) } : {}),
    ...(mirrorMaxKeys
      ? { indexMirrorMaxKeys: countOf(SETTING_SOURCES["indexMirrorMaxKeys"]!, mirrorMaxKeys) }
      : {}),
    ...(mirrorMaxBytes
      ? { indexMirrorMaxBytes: strictInteger(SETTING_SOURCES["indexMirrorMaxBytes"]!, mirrorMaxBytes) }
      : {}),
  };
  try {
    return parseWorkerConfig(config);
  } catch (err) {
    throw namingTheSetting(err);
  }
}

/** A count that may be 0 (`raw` as typed, named by `flag` when it is not one). */
function countOf(flag: string, raw: string): number {
  return raw.trim() === "0" ? 0 : strictInteger(flag, raw);
}

function strictInteger(flag: string, raw: string): number {
  const value = Number(raw);
  if (!/^[0-9]+$/.test(raw.trim()) || !Number.isSafeInteger(value) || value <= 0) {
    throw new ArbiterError(
      ErrorCode.InvalidConfig,
      `${flag} ${JSON.stringify(raw)}: expected a positive integer`,
    );
  }
  return value;
}

/** A configuration error with the worker's setting names replaced by the flags and variables that set them. */
function namingTheSetting(err: unknown): unknown {
  if (!isArbiterError(err, ErrorCode.InvalidConfig)) return err;
  // A list setting's problem names its entry (`lattices.1` is the second of --lattices), counted from 1.
  const message = err.message.replace(
    /(^|: |; | as )(\w+)(?:\.(\d+))?(?=[:; .])/g,
    (whole, lead: string, key: string, index: string | undefined) =>
      SETTING_SOURCES[key]
        ? `${lead}${SETTING_SOURCES[key]}${index === undefined ? "" : ` entry ${Number(index) + 1}`}`
        : whole,
  );
  return message === err.message ? err : new ArbiterError(ErrorCode.InvalidConfig, message, { cause: err });
}

/**
 * Waits until a NATS server in `servers` accepts a connection, logging every failed attempt (the
 * attempts themselves spaced out, up to one every 5 s), so an operator sees why the worker is
 * not serving yet.
 */
async function waitForNats(servers: string[], name: string, log: Logger, inboxPrefix: string): Promise<void> {
  let pause = 500;
  for (let attempt = 1; ; attempt++) {
    let probe: NatsConnection;
    try {
      probe = await connectNats(servers, `${name}-probe`, false, { inboxPrefix });
    } catch (err) {
      // Refused credentials are a setting the worker cannot use, as a bad seed is: it exits at once.
      if (isArbiterError(err, ErrorCode.InvalidConfig)) throw err;
      log.warn(
        { servers, attempt, retryInMs: pause, err: (err as Error).message },
        "cannot reach NATS yet; retrying",
      );
      await delay(pause);
      pause = Math.min(pause * 2, MAX_CONNECT_PAUSE_MS);
      continue;
    }
    await probe.close();
    return;
  }
}
