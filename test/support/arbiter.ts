import { PolicyResponseV1 } from "@arbiter/protocol";
import { parseRulesDocument } from "@arbiter/rules";
import { type ArbiterStore, createRulesAdmin, openJetStreamStore, type RulesAdmin } from "@arbiter/store";
import { createSigner, generateKey, type Signer } from "@arbiter/trust";
import { createWorker, type Worker, type WorkerConfig } from "@arbiter/worker";
import type { NatsConnection } from "@nats-io/nats-core";
import { type Logger, pino } from "pino";
import { connectTo, type NatsServerProcess, startNatsServer } from "../harness/index.js";
import { exampleRulesText } from "./fixtures.js";

/** One real nats-server, the example rules applied by an admin key, and one worker serving them. */
export interface SingleNodeArbiter {
  readonly server: NatsServerProcess;
  readonly nc: NatsConnection;
  readonly store: ArbiterStore;
  readonly admin: RulesAdmin;
  readonly signer: Signer;
  /** The seed of `signer`, for `arbiter` commands that sign (ARBITER_ADMIN_SEED). */
  readonly adminSeed: string;
  readonly worker: Worker;
  /** The deployment the rules stream belongs to. */
  readonly deployment: string;
  /** Sends raw bytes on the policy topic and parses the answer. */
  ask(bytes: Uint8Array): Promise<PolicyResponseV1>;
  stop(): Promise<void>;
}

/**
 * Starts a {@link SingleNodeArbiter} (the worker logging to `options.logger`, silent by default);
 * `stop()` (in `afterAll`) ends the worker, the connection and the server.
 */
export async function startSingleNodeArbiter(
  worker: WorkerConfig = {},
  options: { readonly logger?: Logger } = {},
): Promise<SingleNodeArbiter> {
  const server = await startNatsServer();
  const nc = await connectTo(server.url);
  const adminSeed = generateKey("O").seed;
  const signer = createSigner(adminSeed);
  const store = await openJetStreamStore(nc);
  const admin = createRulesAdmin({ store, signer });
  const { deployment } = await admin.apply(parseRulesDocument(exampleRulesText()));
  const running = createWorker({
    nc,
    logger: options.logger ?? pino({ level: "silent" }),
    config: {
      ...worker,
      adminKeys: [signer.publicKey, ...(worker.adminKeys ?? [])],
      ...(worker.workerSeed === undefined ? configuredWorkerKey() : {}),
    },
  });
  await running.start();
  return {
    server,
    nc,
    store,
    admin,
    signer,
    adminSeed,
    worker: running,
    deployment,
    ask: async (bytes) => {
      const reply = await nc.request("wasmcloud.policy", bytes, { timeout: 5000 });
      return PolicyResponseV1.parse(JSON.parse(reply.string()));
    },
    stop: async () => {
      await running.stop();
      await nc.close();
      await server.stop();
    },
  };
}

/** A new worker seed whose public key `admin` has enrolled, so a worker may serve with it. */
export async function enrolledWorkerSeed(admin: RulesAdmin, name?: string): Promise<string> {
  const key = generateKey("N");
  await admin.enrollWorker(key.publicKey, name === undefined ? {} : { name });
  return key.seed;
}

/**
 * A new worker seed with its public key enrolled by configuration (as `ARBITER_WORKER_KEYS`
 * does), for a worker config: for tests about something else than enrollment.
 */
export function configuredWorkerKey(): { workerSeed: string; workerKeys: string[] } {
  const key = generateKey("N");
  return { workerSeed: key.seed, workerKeys: [key.publicKey] };
}

/** {@link configuredWorkerKey} as the environment of an `arbiter worker` process. */
export function configuredWorkerEnv(): { ARBITER_WORKER_SEED: string; ARBITER_WORKER_KEYS: string } {
  const key = generateKey("N");
  return { ARBITER_WORKER_SEED: key.seed, ARBITER_WORKER_KEYS: key.publicKey };
}
