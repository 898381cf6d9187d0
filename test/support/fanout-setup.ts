import { readFileSync } from "node:fs";
import { PASSWORD_USERS, WORKER_REPLY_PREFIXES } from "@arbiter/embedded-nats";
import type { HostPolicyClient } from "@arbiter/host";
import { DEFAULT_CHANGES_TOPIC } from "@arbiter/protocol";
import type { RulesDocument } from "@arbiter/rules";
import { type ArbiterStore, createRulesAdmin, openJetStreamStore, type RulesAdmin } from "@arbiter/store";
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
} from "../harness/index.js";
import { enrolledWorkerSeed } from "./arbiter.js";
import { defaultRules, startHost } from "./fanout.js";
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
  /** A started reference host client on a new host connection, both ended by `close()`. */
  startHost(options?: Parameters<typeof startHost>[1], publicKey?: string): Promise<HostPolicyClient>;
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
    const store = await openJetStreamStore(nc);
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
      startHost: async (hostOptions = {}, publicKey) => {
        const host = await startHost(await connect("host"), hostOptions, publicKey);
        closers.push(() => host.stop());
        return host;
      },
      close,
    };
  } catch (error) {
    await close().catch(() => {});
    throw error;
  }
}
