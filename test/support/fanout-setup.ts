import type { HostPolicyClient } from "@arbiter/host";
import { DEFAULT_CHANGES_TOPIC } from "@arbiter/protocol";
import type { RulesDocument } from "@arbiter/rules";
import { type ArbiterStore, createRulesAdmin, openJetStreamStore, type RulesAdmin } from "@arbiter/store";
import { createSigner, generateKey } from "@arbiter/trust";
import { createWorker, type Worker, type WorkerConfig } from "@arbiter/worker";
import type { NatsConnection } from "@nats-io/nats-core";
import type { NodeConnectionOptions } from "@nats-io/transport-node";
import { pino } from "pino";
import {
  connectTo,
  type NatsServerOptions,
  type NatsServerProcess,
  startNatsServer,
} from "../harness/index.js";
import { enrolledWorkerSeed } from "./arbiter.js";
import { applyRules, defaultRules, startHost } from "./fanout.js";

/** Whom a connection of a {@link FanoutArbiter} is for: the store and rules admin, a worker, or a host. */
export type FanoutRole = "admin" | "worker" | "host";

/** What a fan-out test file sets up beyond what every one of them does; all optional. */
export interface FanoutArbiterOptions {
  /** Options of the nats-server (accounts and passwords, say); default a plain JetStream server. */
  readonly server?: NatsServerOptions;
  /** Connection options of each role (user, password, inbox prefix); default none. */
  readonly connectAs?: (role: FanoutRole) => Omit<NodeConnectionOptions, "servers">;
  /** The rules the admin applies first; default every request denied. */
  readonly rules?: RulesDocument;
  /** The id of each worker, enrolled by the admin and on its own connection; default w1 and w2. */
  readonly workers?: readonly string[];
  /** Configuration every worker has beyond its id, its enrolled seed and the admin's key. */
  readonly workerConfig?: WorkerConfig;
  /** Records every message on the shared changes topic in `heard`, heard as a host; default false. */
  readonly hearChanges?: boolean;
}

/**
 * A nats-server, the JetStream store and a rules admin with a fresh key on one connection, the
 * first rules applied, and enrolled workers running, each on its own connection.
 */
export interface FanoutArbiter {
  readonly server: NatsServerProcess;
  /** The admin's connection, which `store` and `admin` use. */
  readonly nc: NatsConnection;
  readonly store: ArbiterStore;
  readonly admin: RulesAdmin;
  /** The workers, started in the order of their ids. */
  readonly workers: readonly Worker[];
  /** The connection of each of `workers`. */
  readonly workerConnections: readonly NatsConnection[];
  /** Every message heard on the shared changes topic, raw, in order (with `hearChanges`). */
  readonly heard: readonly string[];
  /** Flushes the connection that hears the changes topic. */
  flushHeard(): Promise<void>;
  /** A new connection for `role` (default a host), closed by `close()`. */
  connect(role?: FanoutRole): Promise<NatsConnection>;
  /** A started reference host client on a new host connection, both ended by `close()`. */
  startHost(options?: Parameters<typeof startHost>[1], publicKey?: string): Promise<HostPolicyClient>;
  /** Stops everything started, the last first; throws the first failure once all were tried. */
  close(): Promise<void>;
}

/**
 * Starts a {@link FanoutArbiter} as `options` say (in `beforeAll`; `close()` in `afterAll`).
 * Rejects with what failed when any part does not start, having stopped the parts that did.
 */
export async function startFanoutArbiter(options: FanoutArbiterOptions = {}): Promise<FanoutArbiter> {
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
    const server = await startNatsServer(options.server);
    closers.push(() => server.stop());
    const connect = async (role: FanoutRole = "host") => {
      const nc = await connectTo(server.url, options.connectAs?.(role));
      closers.push(() => nc.close());
      return nc;
    };
    const nc = await connect("admin");
    const store = await openJetStreamStore(nc);
    closers.push(() => store.close());
    const signer = createSigner(generateKey("O").seed);
    const admin = createRulesAdmin({ store, signer });
    await applyRules(admin, options.rules ?? defaultRules("deny"));
    const workers: Worker[] = [];
    const workerConnections: NatsConnection[] = [];
    for (const id of options.workers ?? ["w1", "w2"]) {
      const workerNc = await connect("worker");
      workerConnections.push(workerNc);
      const worker = createWorker({
        nc: workerNc,
        logger: pino({ level: "silent" }),
        config: {
          ...options.workerConfig,
          id,
          adminKeys: [signer.publicKey],
          workerSeed: await enrolledWorkerSeed(admin, id),
        },
      });
      await worker.start();
      closers.push(() => worker.stop());
      workers.push(worker);
    }
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
      workers,
      workerConnections,
      heard,
      flushHeard: async () => {
        await listener?.flush();
      },
      connect,
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
