import { readFileSync } from "node:fs";
import { PASSWORD_USERS, WORKER_REPLY_PREFIXES } from "@arbiter/embedded-nats";
import type { HostPolicyClient } from "@arbiter/host";
import { DEFAULT_CHANGES_TOPIC, resourceNames, WorkerStatusV1 } from "@arbiter/protocol";
import type { RulesDocument } from "@arbiter/rules";
import {
  type ArbiterStore,
  createRulesAdmin,
  type JetStreamStoreOptions,
  openJetStreamStore,
  type RulesAdmin,
} from "@arbiter/store";
import { createSigner, generateKey, type Signer } from "@arbiter/trust";
import { createWorker, type Worker, type WorkerConfig } from "@arbiter/worker";
import type { NatsConnection } from "@nats-io/nats-core";
import type { NodeConnectionOptions } from "@nats-io/transport-node";
import { type Logger, pino } from "pino";
import {
  connectTo,
  type NatsServerOptions,
  type NatsServerProcess,
  startNatsServer,
  until,
} from "../harness/index.js";
import { enrolledWorkerSeed } from "./arbiter.js";
import { type RunningArbiter, spawnArbiter } from "./cli.js";
import { componentBody, defaultRules, startHost } from "./fanout.js";
import { TEST_PASSWORDS } from "./permission-attacks.js";

/** Whom a connection of a {@link FanoutArbiter} is for: the store and rules admin, a worker, or a host. */
export type FanoutRole = "admin" | "worker" | "host";

/** What a fan-out test file sets up beyond what every one of them does; all optional. */
export interface FanoutArbiterOptions {
  /** Options of the nats-server (accounts and passwords, say); default a plain JetStream server. */
  readonly server?: NatsServerOptions;
  /** Connection options of each role (user, password, inbox prefix); default none. */
  readonly connectAs?: (role: FanoutRole) => Omit<NodeConnectionOptions, "servers">;
  /**
   * The shipped permissions (`deploy/nats/accounts.conf`, the password form): each role signs in
   * as its user with Arbiter's inbox prefixes, and workers answer the hosts' `_R_.` replies.
   * Takes the place of `server` and `connectAs`; default false.
   */
  readonly shippedPermissions?: boolean;
  /** The seed of the admin key that signs the rules (`O…`); default a fresh one. */
  readonly adminSeed?: string;
  /** The rules the admin applies first; default every request denied. */
  readonly rules?: RulesDocument;
  /** The id of each worker, enrolled by the admin and on its own connection; default w1 and w2. */
  readonly workers?: readonly string[];
  /** Configuration every worker has beyond its id, its enrolled seed and the admin's key. */
  readonly workerConfig?: WorkerConfig;
  /** What every worker logs to; default nothing. */
  readonly workerLogger?: Logger;
  /** Records every message on the shared changes topic in `heard`, heard as a host; default false. */
  readonly hearChanges?: boolean;
  /** Options of the admin's store (a short revocation ack wait, say); default none. */
  readonly storeOptions?: JetStreamStoreOptions;
}

/** How {@link FanoutArbiter.spawnWorker} starts one `arbiter worker` process. */
export interface SpawnedWorkerOptions {
  /** Its seed, enrolled already or by `ARBITER_WORKER_KEYS`; default a new seed the admin enrolls. */
  readonly seed?: string;
  /** Environment on top of the connection's, the admin's key and the seed (log level `info`). */
  readonly env?: Readonly<Record<string, string>>;
}

/** How {@link FanoutArbiter.startWorker} starts one worker beyond what every worker has. */
export interface FanoutWorkerOptions {
  /** Its seed, enrolled already; default a new seed the admin enrolls under its id. */
  readonly seed?: string;
  /** Configuration on top of `workerConfig`. */
  readonly config?: WorkerConfig;
  /** What it logs to; default `workerLogger`. */
  readonly logger?: Logger;
  /** Its clock; default the machine's. */
  readonly clock?: () => Date;
  /** Its connection for JetStream; default its own connection, the one it answers on. */
  readonly storeNc?: NatsConnection;
}

/**
 * A nats-server, the JetStream store and a rules admin with its key on one connection, the first
 * rules applied, and enrolled workers running, each on its own connection.
 */
export interface FanoutArbiter {
  readonly server: NatsServerProcess;
  /** The admin's connection, which `store` and `admin` use. */
  readonly nc: NatsConnection;
  readonly store: ArbiterStore;
  readonly admin: RulesAdmin;
  /** The admin's key, which every worker accepts rule events of. */
  readonly signer: Signer;
  /** The seed of `signer`, for `arbiter` commands that sign (ARBITER_ADMIN_SEED). */
  readonly adminSeed: string;
  /** The deployment the first rules started. */
  readonly deployment: string;
  /** Every worker started, stopped ones too, in the order they started. */
  readonly workers: readonly Worker[];
  /** The connection of each of `workers`. */
  readonly workerConnections: readonly NatsConnection[];
  /** Every message heard on the shared changes topic, raw, in order (with `hearChanges`). */
  readonly heard: readonly string[];
  /** Flushes the connection that hears the changes topic. */
  flushHeard(): Promise<void>;
  /** A new connection for `role` (default a host) to `url` (default the server's), closed by `close()`. */
  connect(role?: FanoutRole, url?: string): Promise<NatsConnection>;
  /** Starts one more worker `id` on a new worker connection, stopped by `close()`; rejects as its `start()` does. */
  startWorker(id: string, options?: FanoutWorkerOptions): Promise<Worker>;
  /**
   * Starts an `arbiter worker --name <name>` process connected as a worker and waits until it says
   * it is ready; `close()` stops it (one killed already is left as it is).
   */
  spawnWorker(name: string, options?: SpawnedWorkerOptions): Promise<RunningArbiter>;
  /**
   * The status counters of `count` workers, by worker id, as they answer on the status subject
   * over the admin's connection.
   */
  workerStats(count: number): Promise<Map<string, Record<string, number>>>;
  /** A started reference host client on a new host connection, both ended by `close()`. */
  startHost(options?: Parameters<typeof startHost>[1], publicKey?: string): Promise<HostPolicyClient>;
  /**
   * `hosts` started host clients, each with `perHost` start decisions cached (components
   * `h<host>-c<i>`), answered as the rules say.
   */
  startCachingHosts(hosts: number, perHost: number): Promise<HostPolicyClient[]>;
  /** Stops everything started, the last first; throws the first failure once all were tried. */
  close(): Promise<void>;
}

/** Connection options under the shipped permissions: each role's user, and Arbiter's inbox prefixes. */
function shippedCredentials(role: FanoutRole): Omit<NodeConnectionOptions, "servers"> {
  const { user, passwordVariable } = PASSWORD_USERS[role];
  return {
    user,
    pass: TEST_PASSWORDS[passwordVariable],
    ...(role === "host" ? {} : { inboxPrefix: `_INBOX_arbiter_${role}` }),
  };
}

/**
 * Starts a {@link FanoutArbiter} as `options` say (in `beforeAll`; `close()` in `afterAll`).
 * Rejects with what failed when any part does not start, having stopped the parts that did.
 */
export async function startFanoutArbiter(options: FanoutArbiterOptions = {}): Promise<FanoutArbiter> {
  const shipped = options.shippedPermissions === true;
  const serverOptions: NatsServerOptions | undefined = shipped
    ? {
        extraConfig: readFileSync(new URL("../../deploy/nats/accounts.conf", import.meta.url), "utf8"),
        env: { ...TEST_PASSWORDS },
      }
    : options.server;
  const connectAs = shipped ? shippedCredentials : options.connectAs;
  const workerConfig: WorkerConfig = {
    ...(shipped ? { inboxPrefixes: [...WORKER_REPLY_PREFIXES] } : {}),
    ...options.workerConfig,
  };
  const closers: (() => Promise<void>)[] = [];
  const close = async () => {
    const failures: unknown[] = [];
    for (let closer = closers.pop(); closer !== undefined; closer = closers.pop()) {
      try {
        await closer();
      } catch (error) {
        failures.push(error);
      }
    }
    if (failures.length > 0) throw failures[0];
  };
  try {
    const server = await startNatsServer(serverOptions);
    closers.push(() => server.stop());
    const connect = async (role: FanoutRole = "host", url = server.url) => {
      const nc = await connectTo(url, connectAs?.(role));
      closers.push(() => nc.close());
      return nc;
    };
    const nc = await connect("admin");
    const store = await openJetStreamStore(nc, options.storeOptions);
    closers.push(() => store.close());
    const adminSeed = options.adminSeed ?? generateKey("O").seed;
    const signer = createSigner(adminSeed);
    const admin = createRulesAdmin({ store, signer });
    const { deployment } = await admin.apply(options.rules ?? defaultRules("deny"));
    const workers: Worker[] = [];
    const workerConnections: NatsConnection[] = [];
    const startWorker = async (id: string, workerOptions: FanoutWorkerOptions = {}) => {
      const workerNc = await connect("worker");
      const worker = createWorker({
        nc: workerNc,
        ...(workerOptions.storeNc === undefined ? {} : { storeNc: workerOptions.storeNc }),
        logger: workerOptions.logger ?? options.workerLogger ?? pino({ level: "silent" }),
        ...(workerOptions.clock === undefined ? {} : { clock: workerOptions.clock }),
        config: {
          ...workerConfig,
          ...workerOptions.config,
          id,
          adminKeys: [signer.publicKey],
          workerSeed: workerOptions.seed ?? (await enrolledWorkerSeed(admin, id)),
        },
      });
      await worker.start();
      closers.push(() => worker.stop());
      workers.push(worker);
      workerConnections.push(workerNc);
      return worker;
    };
    for (const id of options.workers ?? ["w1", "w2"]) await startWorker(id);
    const heard: string[] = [];
    let listener: NatsConnection | undefined;
    if (options.hearChanges === true) {
      listener = await connect("host");
      listener.subscribe(DEFAULT_CHANGES_TOPIC, {
        callback: (_e, m) => {
          heard.push(m.string());
        },
      });
      await listener.flush();
    }
    const spawnWorker = async (name: string, spawned: SpawnedWorkerOptions = {}) => {
      const { user, pass } = connectAs?.("worker") ?? {};
      const worker = spawnArbiter(["worker", "--name", name], {
        NATS_URL: server.url,
        ...(user === undefined ? {} : { NATS_USER: user }),
        ...(typeof pass === "string" ? { NATS_PASSWORD: pass } : {}),
        ...(shipped ? { ARBITER_INBOX_PREFIXES: WORKER_REPLY_PREFIXES.join(",") } : {}),
        ARBITER_ADMIN_KEYS: signer.publicKey,
        ARBITER_WORKER_SEED: spawned.seed ?? (await enrolledWorkerSeed(admin, name)),
        ARBITER_LOG_LEVEL: "info",
        ...spawned.env,
      });
      closers.push(async () => void (await worker.stop()));
      await until(() => /worker ready/.test(worker.stdout() + worker.stderr()), {
        name: `worker ${name} ready`,
        timeout: 30_000,
      });
      return worker;
    };
    const workerStats = async (count: number) => {
      const stats = new Map<string, Record<string, number>>();
      const inbox = `${connectAs?.("admin").inboxPrefix ?? "_INBOX"}.fanout-status.${generateKey("N").publicKey}`;
      const sub = nc.subscribe(inbox);
      nc.publish(resourceNames().statusSubject, new Uint8Array(), { reply: inbox });
      for await (const m of sub) {
        const status = WorkerStatusV1.parse(m.json());
        stats.set(status.id, status.stats);
        if (stats.size === count) break;
      }
      return stats;
    };
    const startOneHost = async (hostOptions: Parameters<typeof startHost>[1] = {}, publicKey?: string) => {
      const host = await startHost(await connect("host"), hostOptions, publicKey);
      closers.push(() => host.stop());
      return host;
    };
    return {
      server,
      nc,
      store,
      admin,
      signer,
      adminSeed,
      deployment,
      workers,
      workerConnections,
      heard,
      flushHeard: async () => {
        await listener?.flush();
      },
      connect,
      startWorker,
      spawnWorker,
      workerStats,
      startHost: startOneHost,
      startCachingHosts: async (count, perHost) => {
        const hosts: HostPolicyClient[] = [];
        for (let h = 0; h < count; h++) hosts.push(await startOneHost());
        await Promise.all(
          hosts.map(async (host, h) => {
            for (let i = 0; i < perHost; i++) await host.evaluateStartComponent(componentBody(`h${h}-c${i}`));
          }),
        );
        return hosts;
      },
      close,
    };
  } catch (error) {
    await close().catch(() => {});
    throw error;
  }
}
