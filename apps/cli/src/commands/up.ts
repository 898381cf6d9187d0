import { existsSync } from "node:fs";
import { createServer } from "node:net";
import { isAbsolute, join, relative, resolve } from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import {
  findNatsServer,
  latticeBuckets,
  type NatsCluster,
  type NatsServerProcess,
  startNatsCluster,
  startNatsServer,
  WORKER_INBOX_PREFIX,
  WORKER_REPLY_PREFIXES,
} from "@arbiter/embedded-nats";
import { ArbiterError, DEFAULT_CHANGES_TOPIC, DEFAULT_POLICY_TOPIC, ErrorCode } from "@arbiter/protocol";
import { isEnrolled, type RulesDocument } from "@arbiter/rules";
import {
  type ArbiterStore,
  ChainBrokenError,
  createRulesAdmin,
  type DecisionsRetention,
  isChainBrokenError,
  isStoreUnavailableError,
  openJetStreamStore,
  type RulesAdmin,
} from "@arbiter/store";
import { createSigner } from "@arbiter/trust";
import { createWorker, type Worker } from "@arbiter/worker";
import { Kvm } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/nats-core";
import { Command } from "commander";
import type { Logger } from "pino";
import {
  adminSigner,
  connectNats,
  localAdminSeed,
  localAdminSeedFile,
  localWorkerSeed,
  localWorkerSeedFile,
  prepareArbiterHome,
  readLocalState,
  replaceLocalWorkerSeed,
  resolveAdminKeys,
  resolveChangesPerHost,
  writeLocalState,
} from "../context.js";
import { parseIntegerFlag, parseOptionalIntegerFlag } from "../flags.js";
import { checkHomeLayout } from "../home-layout.js";
import { describeUnfilteredIndexConsumer } from "../index-consumer.js";
import { clearNatsPids, recordNatsPids, stopLeftoverNats } from "../leftover-nats.js";
import { createLogger, drainOrClose, untilSignal } from "../lifecycle.js";
import { emit } from "../output.js";
import {
  describeRetentionChange,
  type RetentionFlags,
  resolveRetention,
  retentionOptions,
} from "../retention.js";
import { prepareSecureNats, type SecureNats } from "../secure-nats.js";
import { readRulesFile } from "./rules.js";

interface UpFlags extends RetentionFlags {
  workers: string;
  nodes: string;
  rules?: string;
  port?: string;
  secure?: boolean;
  changesPerHost?: boolean;
  json?: boolean;
}

const EXAMPLE_RULES = fileURLToPath(new URL("../../../../deploy/rules/example.yaml", import.meta.url));

/** What `arbiter up` did with its rules file. */
interface RulesAtStart {
  readonly file: string | null;
  readonly applied: boolean;
  readonly reason: string;
}

/** `arbiter up`: embedded NATS with JetStream, the rules and N workers, until SIGINT, SIGTERM or SIGHUP. */
export function upCommand(): Command {
  return retentionOptions(new Command("up"))
    .description(
      "run a local Arbiter: embedded NATS (JetStream), decision workers and rules; Ctrl-C (or SIGTERM, SIGHUP) stops all; its data, keys and credentials are kept in ARBITER_HOME (default .arbiter), where the other commands run in this folder find it",
    )
    .summary(
      "run a local Arbiter: embedded NATS (JetStream), decision workers and rules; Ctrl-C (or SIGTERM, SIGHUP) stops all",
    )
    .option("--workers <n>", "decision workers to run", "3")
    .option("--nodes <n>", "NATS servers: 1, or 3 for a JetStream cluster with R3 streams", "1")
    .option(
      "--rules <file>",
      "rules to apply at start, replacing those in force (default: the example rules, only when no rules were ever applied)",
    )
    .option(
      "--port <n>",
      "client port of the (first) NATS server; 0 for a free one (default 4222, or a free one if taken)",
    )
    .option(
      "--secure",
      "run NATS with the shipped accounts and permissions (operator mode); credentials go into ARBITER_HOME/secure",
    )
    .option(
      "--changes-per-host",
      "its workers publish each override on its host's own subject, wasmcloud.policy.changes.<host key> (env ARBITER_CHANGES_PER_HOST=true)",
    )
    .option(
      "--no-changes-per-host",
      "its workers publish every override on the changes topic, whatever ARBITER_CHANGES_PER_HOST says",
    )
    .option("--json", "print the started cluster as JSON")
    .action(async (flags: UpFlags) => {
      const log = createLogger("arbiter-up");
      const workerCount = parseIntegerFlag(flags.workers, "--workers", { min: 1, max: 64 });
      const nodes = parseIntegerFlag(flags.nodes, "--nodes", { min: 1, max: 3 });
      if (nodes !== 1 && nodes !== 3)
        throw new ArbiterError(
          ErrorCode.InvalidConfig,
          `--nodes ${JSON.stringify(flags.nodes)}: expected 1 or 3`,
        );
      const requestedPort = parseOptionalIntegerFlag(flags.port, "--port", { min: 0, max: 65535 });
      const retention = resolveRetention(flags);
      const perHostEnv = resolveChangesPerHost();
      const changesPerHost = flags.changesPerHost ?? perHostEnv;
      if (flags.rules !== undefined && flags.rules !== "-" && !existsSync(flags.rules)) {
        throw new ArbiterError(ErrorCode.InvalidConfig, `rules file ${flags.rules} not found`);
      }
      const explicitRules = flags.rules === undefined ? undefined : readRulesFile(flags.rules);
      const home = prepareArbiterHome();
      const running = readLocalState();
      if (running) {
        throw new ArbiterError(
          ErrorCode.InvalidConfig,
          `arbiter up is already running for ${home} (pid ${running.pid}, NATS at ${running.url}); stop it first, or set ARBITER_HOME to another folder`,
        );
      }
      // The admin key is checked before any nats-server starts, so a bad seed leaves nothing running.
      const seedFromEnv = Boolean(process.env["ARBITER_ADMIN_SEED"]);
      if (!seedFromEnv) localAdminSeed(true);
      const signer = adminSigner();
      // A local.json whose process is gone was left by an `up` that was killed (SIGKILL).
      writeLocalState(null);
      await findNatsServer({ log: (line) => log.info(line) });
      const leftover = await stopLeftoverNats(home);
      if (leftover.length > 0)
        log.warn({ pids: leftover }, "stopped the nats-server left running by an earlier arbiter up");
      checkHomeLayout(home, { nodes: nodes === 3 ? 3 : 1, secure: flags.secure === true });
      // Checked after the leftover is stopped: the port it held is this home's own.
      if (requestedPort !== undefined && requestedPort > 0 && !(await isFree(requestedPort))) {
        throw new ArbiterError(
          ErrorCode.InvalidConfig,
          `--port ${requestedPort}: the port is in use on 127.0.0.1; pass another, or --port 0 for a free one`,
        );
      }

      const replicas = nodes === 3 ? 3 : 1;
      const secure: SecureNats | undefined = flags.secure === true ? prepareSecureNats(home) : undefined;
      if (!secure)
        log.warn(
          "NATS runs open (no accounts, no permissions): anyone who reaches it can answer hosts, override their decisions and read every record; use --secure for the shipped permissions",
        );
      const extra = secure ? { extraConfig: secure.config } : {};
      let nats: NatsServerProcess | NatsCluster;
      const port = requestedPort === 0 ? -1 : (requestedPort ?? ((await isFree(4222)) ? 4222 : -1));
      if (nodes === 1) {
        nats = await startNatsServer({ port, storeDir: join(home, "nats"), detached: true, ...extra });
      } else {
        nats = await startNatsCluster({
          nodes: 3,
          port,
          storeDir: join(home, "nats-cluster"),
          logDir: join(home, "logs"),
          detached: true,
          ...extra,
        });
      }
      const servers = "servers" in nats ? nats.servers : [nats];
      recordNatsPids(
        home,
        servers.map((s) => s.pid),
      );
      const urls = servers.map((s) => s.url);

      const connections: NatsConnection[] = [];
      const workers: Worker[] = [];
      let stopping = false;
      let signalled: Promise<null> | undefined;
      const stopAll = async () => {
        stopping = true;
        await Promise.allSettled(workers.map((w) => w.stop()));
        await Promise.allSettled(connections.map((c) => drainOrClose(c)));
        await nats.stop();
        clearNatsPids(home);
        writeLocalState(null);
      };
      const lost = natsLost(servers, () => stopping, log);
      try {
        const control = await connectNats(urls, "arbiter-up", false, credentials(secure, "admin"));
        connections.push(control);
        const { store, latest } = await openStoreWhenReady(control, replicas, log, retention);
        const admin = createRulesAdmin({ store, signer });
        const { revision: rulesRevision, rules } = await rulesAtStart(
          admin,
          latest,
          flags.rules,
          explicitRules,
        );
        log.info({ revision: rulesRevision, rules }, rules.applied ? "rules applied" : "rules kept");
        const adminKeys = resolveAdminKeys(undefined, signer);
        const seeds = await enrollLocalWorkers(admin, workerCount, log).catch((err: unknown) => {
          if (!isChainBrokenError(err)) throw err;
          throw new ChainBrokenError(
            `${err.message}. The rules in ${home} cannot be used: remove that folder (or set ARBITER_HOME to another) to start a new deployment`,
            err.revision,
            { cause: err },
          );
        });
        // The workers serve the revision after their keys' enrollment, if that took events.
        const { revision, deployment, documentRevision } = await admin.stateAt();
        if (secure) await createLatticeBuckets(urls, secure);
        const workerConnection = { inboxPrefix: WORKER_INBOX_PREFIX, ...credentials(secure, "worker") };
        for (let i = 1; i <= workerCount; i++) {
          const nc = await connectNats(urls, `arbiter-worker-local-${i}`, true, workerConnection);
          connections.push(nc);
          const storeNc = await connectNats(urls, `arbiter-worker-local-${i}-store`, true, workerConnection);
          connections.push(storeNc);
          const worker = createWorker({
            nc,
            storeNc,
            logger: log,
            config: {
              id: `local-${i}`,
              adminKeys,
              replicas,
              workerSeed: seeds[i - 1]!,
              ...(deployment === null ? {} : { deployment }),
              ...(changesPerHost ? { changesPerHost } : {}),
              // Through the lattice account's service import, hosts' requests arrive with `_R_.` replies.
              ...(secure ? { inboxPrefixes: [...WORKER_REPLY_PREFIXES] } : {}),
            },
          });
          await worker.start();
          workers.push(worker);
        }
        writeLocalState({
          url: urls.join(","),
          pid: process.pid,
          adminPublicKey: signer.publicKey,
          startedAt: new Date().toISOString(),
        });
        const shownRules = rules.file === null ? null : relative(process.cwd(), rules.file) || rules.file;
        // Before the report: whoever reads it may signal at once, and a signal with no handler yet
        // would end the process without stopping anything.
        signalled = untilSignal(stopAll, log).then(() => null);
        emit(
          flags.json === true,
          {
            url: urls.join(","),
            servers: urls,
            nodes,
            natsPids: servers.map((s) => s.pid),
            workers: workers.map((w) => w.id),
            workerKeys: workers.map((w) => w.publicKey),
            deployment,
            revision,
            rulesRevision: documentRevision,
            rules,
            adminPublicKey: signer.publicKey,
            dataDir: home,
            policyTopic: DEFAULT_POLICY_TOPIC,
            changesTopic: DEFAULT_CHANGES_TOPIC,
            changesPerHost,
            secure: secure !== undefined,
            ...(secure ? { credentials: secure.credsFiles } : {}),
          },
          () =>
            [
              `NATS ${urls.join(",")}`,
              `Arbiter is up: ${workerCount} worker${workerCount === 1 ? "" : "s"} answering on ${DEFAULT_POLICY_TOPIC} (queue group "arbiter"), ${nodes === 3 ? "3-node JetStream cluster, R3 streams" : "1 NATS server"}.`,
              `  rules       revision ${documentRevision}: ${rules.applied ? `applied ${shownRules}` : "kept"} (${rules.reason})${revision === documentRevision ? "" : `; the history is at revision ${revision}`}`,
              `  deployment  ${deployment}; worker keys enrolled, seeds in ${shownPath(join(home, "workers"))}`,
              `  admin key   ${signer.publicKey} (${seedFromEnv ? "seed from ARBITER_ADMIN_SEED" : `seed in ${shownPath(localAdminSeedFile())}`})`,
              `  data        ${home}`,
              "Point wasmCloud hosts at it:",
              changesPerHost
                ? `  WASMCLOUD_POLICY_TOPIC=${DEFAULT_POLICY_TOPIC} WASMCLOUD_POLICY_CHANGES_TOPIC=${DEFAULT_CHANGES_TOPIC}.<the host's key> (overrides are per host; start each host with WASMCLOUD_HOST_SEED so its key is known) (NATS at the URL above)`
                : `  WASMCLOUD_POLICY_TOPIC=${DEFAULT_POLICY_TOPIC} WASMCLOUD_POLICY_CHANGES_TOPIC=${DEFAULT_CHANGES_TOPIC} (NATS at the URL above)`,
              ...(secure ? hostCredentialHint(urls[0] ?? "", secure) : []),
              `From another terminal in ${process.cwd()}:`,
              ...(secure ? [`  export NATS_CREDS=${shownPath(secure.credsFiles.admin)}`] : []),
              ...cliHint(home),
              "Ctrl-C stops everything.",
            ].join("\n"),
        );
      } catch (err) {
        await stopAll();
        throw err;
      }
      const reason = await Promise.race([signalled ?? untilSignal(stopAll, log).then(() => null), lost]);
      if (reason !== null) {
        // Nothing can answer or record without NATS: stop the rest, so no `up` lingers that serves nothing.
        stopping = true;
        await Promise.allSettled(connections.map((c) => c.close()));
        await stopAll();
        throw new ArbiterError(ErrorCode.StoreUnavailable, `${reason}; arbiter up stopped`);
      }
    });
}

/**
 * The seeds of the local workers (kept in ARBITER_HOME/workers, mode 0600, so a restart reuses
 * them), each worker's key enrolled in the deployment unless it is already.
 */
async function enrollLocalWorkers(admin: RulesAdmin, count: number, log: Logger): Promise<string[]> {
  const seeds: string[] = [];
  await admin.ensureDeployment();
  for (let i = 1; i <= count; i++) {
    let seed = localWorkerSeed(i);
    const { workers } = await admin.stateAt();
    const publicKey = createSigner(seed, "N").publicKey;
    const removedAt = workers.filter((w) => w.publicKey === publicKey).at(-1)?.to ?? null;
    if (removedAt !== null && !isEnrolled(workers, publicKey)) {
      // An admin removed it (its seed leaked, say): enrolling it again would undo that.
      seed = replaceLocalWorkerSeed(i);
      const replacement = createSigner(seed, "N").publicKey;
      log.warn(
        { worker: `local-${i}`, removedKey: publicKey, publicKey: replacement, removedAt },
        `local-${i}'s key ${publicKey} was removed at revision ${removedAt}: it is not enrolled again; local-${i} has a new key, ${replacement}, enrolled in its place (seed in ${shownPath(localWorkerSeedFile(i))})`,
      );
    }
    const key = createSigner(seed, "N").publicKey;
    if (!isEnrolled((await admin.stateAt()).workers, key)) {
      await admin.enrollWorker(key, { name: `local-${i}`, reason: "arbiter up" });
    }
    seeds.push(seed);
  }
  return seeds;
}

/**
 * Resolves with what happened once fewer than a majority of the servers run (for one server: once
 * it ends) while `up` is not stopping them itself; each server that ends is logged as it does.
 */
function natsLost(
  servers: readonly NatsServerProcess[],
  stopping: () => boolean,
  log: Logger,
): Promise<string> {
  return new Promise((resolve) => {
    let ended = 0;
    for (const server of servers) {
      void server.exited().then((how) => {
        if (stopping()) return;
        ended++;
        const running = servers.length - ended;
        const goesOn = running > servers.length / 2;
        log.error(
          { natsPid: server.pid, server: server.url, running },
          goesOn
            ? `nats-server ${how}; ${running} of ${servers.length} nodes still run, enough for the R${servers.length} streams, and up goes on: the node comes back when arbiter up is started again (Ctrl-C, then arbiter up)`
            : `nats-server ${how}`,
        );
        if (!goesOn)
          resolve(
            `nats-server ${server.url} (pid ${server.pid}) ${how}, leaving ${running} of ${servers.length}`,
          );
      });
    }
  });
}

const STORE_READY_DEADLINE_MS = 60_000;

/**
 * Opens (creating them the first time) Arbiter's streams once JetStream answers. A cluster restarted
 * on its data has a meta leader before its R3 streams have elected theirs, and JetStream requests
 * time out until they have (the rules stream and the snapshot bucket are asked), so STORE_UNAVAILABLE is retried until {@link STORE_READY_DEADLINE_MS}.
 */
async function openStoreWhenReady(
  nc: NatsConnection,
  replicas: number,
  log: Logger,
  decisionsRetention?: DecisionsRetention,
): Promise<{ store: ArbiterStore; latest: number }> {
  const deadline = Date.now() + STORE_READY_DEADLINE_MS;
  for (let attempt = 1; ; attempt++) {
    try {
      const store = await openJetStreamStore(nc, {
        replicas,
        ...(decisionsRetention ? { decisionsRetention } : {}),
      });
      const changed = describeRetentionChange(store.names.decisionsStream, store.decisionsRetention);
      if (changed) log.warn(changed);
      const unfiltered = describeUnfilteredIndexConsumer(store.unfilteredIndexConsumer);
      if (unfiltered) log.warn(unfiltered);
      const latest = await store.rules.lastRevision();
      // A restarted cluster may answer stream info before reads: read the event the chain checks next.
      if (latest > 0) await store.rules.get(latest);
      // The snapshot bucket is a stream of its own, with a leader of its own to wait for.
      await store.snapshots.load();
      return { store, latest };
    } catch (err) {
      if (!isStoreUnavailableError(err) || Date.now() >= deadline) throw err;
      log.info({ attempt, err: err.message }, "JetStream not ready yet; trying again");
      await delay(500);
    }
  }
}

/**
 * Applies the rules at start only when asked (`--rules`) or when no rule event was ever written
 * (then the example rules), so a restart keeps what the operator applied since.
 */
async function rulesAtStart(
  admin: RulesAdmin,
  latest: number,
  file: string | undefined,
  explicit: RulesDocument | undefined,
): Promise<{ revision: number; rules: RulesAtStart }> {
  if (file !== undefined && explicit !== undefined) {
    const current = await admin.stateAt();
    if (JSON.stringify(current.document) === JSON.stringify(explicit)) {
      return {
        revision: current.revision,
        rules: { file, applied: false, reason: `--rules ${file} is already in force` },
      };
    }
    const applied = await admin.apply(explicit, { reason: `arbiter up --rules ${file}` });
    return { revision: applied.revision, rules: { file, applied: true, reason: "--rules given" } };
  }
  if (latest === 0) {
    const applied = await admin.apply(readRulesFile(EXAMPLE_RULES), {
      reason: "arbiter up: the example rules, as no rules were applied yet",
    });
    return {
      revision: applied.revision,
      rules: { file: EXAMPLE_RULES, applied: true, reason: "the rules stream was empty: the example rules" },
    };
  }
  return {
    revision: latest,
    rules: {
      file: null,
      applied: false,
      reason: `the rules stream already has revision ${latest}; pass --rules FILE to replace them`,
    },
  };
}

/** Connection options of a role under `--secure` (its `.creds` file), none without. */
function credentials(secure: SecureNats | undefined, role: "admin" | "worker"): { credsFile?: string } {
  return secure ? { credsFile: secure.credsFiles[role] } : {};
}

/**
 * Creates the lattice buckets of lattice `default` with the host credentials before any host
 * connects: whoever creates them first chooses their configuration (README, "Threat model").
 */
async function createLatticeBuckets(urls: string[], secure: SecureNats): Promise<void> {
  const nc = await connectNats(urls, "arbiter-up-lattice", false, {
    inboxPrefix: "_INBOX",
    credsFile: secure.credsFiles.host,
  });
  try {
    const kvm = new Kvm(nc);
    for (const bucket of latticeBuckets("default")) await kvm.create(bucket);
  } finally {
    await nc.close();
  }
}

/**
 * How a wasmCloud 1.x host signs in under `--secure`: the host user's JWT and seed, by file or value
 * (the `wasmcloud` binary's `--nats-creds` / `WASMCLOUD_NATS_CREDS`, `--nats-jwt` and `--nats-seed`).
 */
function hostCredentialHint(url: string, secure: SecureNats): string[] {
  const { hostname, port } = new URL(url);
  const creds = shownPath(secure.credsFiles.host);
  return [
    `  WASMCLOUD_NATS_HOST=${hostname} WASMCLOUD_NATS_PORT=${port} WASMCLOUD_NATS_CREDS=${creds}`,
    `  (or WASMCLOUD_NATS_JWT and WASMCLOUD_NATS_SEED: the JWT and the seed in ${creds})`,
  ];
}

/** A path as the operator would type it: relative when under the current folder, else absolute. */
function shownPath(path: string): string {
  const rel = relative(process.cwd(), path);
  return rel === "" || rel.startsWith("..") || isAbsolute(rel) ? path : rel;
}

/**
 * The commands to run from another terminal, as they work there: through `npx` (`arbiter` is on
 * PATH only once linked), with the ARBITER_HOME they need to find this `up`.
 */
function cliHint(home: string): string[] {
  return [
    ...(home === resolve(".arbiter") ? [] : [`  export ARBITER_HOME=${home}`]),
    "  npx arbiter rules show",
    "  npx arbiter rules apply FILE",
    "  npx arbiter decisions tail",
  ];
}

function isFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = createServer();
    probe.once("error", () => resolve(false));
    probe.listen(port, "127.0.0.1", () => probe.close(() => resolve(true)));
  });
}
