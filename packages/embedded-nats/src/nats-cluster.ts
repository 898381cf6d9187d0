import { join } from "node:path";
import { isNatsClusterFormationError, NatsClusterFormationError } from "./errors.js";
import { findNatsServer } from "./find-nats-server.js";
import { type NatsServerProcess, startNatsServer } from "./nats-server.js";
import { pollUntil } from "./poll.js";
import { httpGet } from "./probes.js";
import { isPortTaken, reserveRoutePorts } from "./route-ports.js";
import { bracketIpv6 } from "./server-config.js";

/** How {@link startNatsCluster} runs a local JetStream cluster. */
export interface NatsClusterOptions {
  /** Number of nodes, at least 2; default 3. */
  nodes?: number;
  /** Cluster name; default "arbiter". */
  name?: string;
  /** JetStream is always on in a cluster; the field only documents that. */
  jetstream?: true;
  /** Address every node binds to; default "127.0.0.1". */
  host?: string;
  /** Debug logging on every node; default false. */
  debug?: boolean;
  /** Run every node in its own process group (see `NatsServerOptions.detached`); default false. */
  detached?: boolean;
  /** Directory that receives `<serverName>.log` for every node; default none (logs stay in memory). */
  logDir?: string;
  /**
   * Directory under which every node keeps its JetStream data, in `<storeDir>/<serverName>`, kept on
   * stop (so a cluster started again on it has its streams); default a temporary directory per node.
   */
  storeDir?: string;
  /** Client port of the first node (n1); default -1 (a free one). The other nodes get free ports. */
  port?: number;
  /** Per-node start deadline in milliseconds; default 20 000. */
  startTimeout?: number;
  /** Deadline in milliseconds for the nodes to agree on a meta leader; default 30 000. */
  formTimeout?: number;
  /** Path of the `nats-server` binary; default {@link findNatsServer}'s answer. */
  binary?: string;
  /** Configuration appended to every node's file (accounts and permissions), as `NatsServerOptions.extraConfig`. */
  extraConfig?: string;
  /** Extra environment for every node (passwords its configuration reads). */
  env?: Record<string, string>;
}

/** A running local cluster. Disposing it stops every node. */
export interface NatsCluster extends AsyncDisposable {
  /** The nodes, named n1..nN, in that order. */
  readonly servers: readonly NatsServerProcess[];
  /** Client URL of every node. */
  readonly urls: readonly string[];
  /** All client URLs comma-joined, as a single `servers` string. */
  readonly url: string;
  /**
   * Resolves with the meta leader's name once every node names the same JetStream meta leader, the
   * meta group has as many peers as there are nodes and the leader sees all others as current (as after
   * restarting a killed node). Rejects with {@link NatsClusterFormationError} after `timeout` (default 30 000 ms).
   */
  waitUntilFormed(options?: { timeout?: number }): Promise<string>;
  /** Stops every node and removes their temporary directories. Idempotent. */
  stop(): Promise<void>;
}

const DEFAULT_FORM_TIMEOUT_MS = 30_000;
/** Tries with fresh route ports before a port taken by another process fails the start. */
const PORT_ATTEMPTS = 3;

/**
 * Starts a JetStream cluster of `nodes` servers (default 3): route ports are reserved up front, below
 * the OS's ephemeral range, so each node routes to all others; client and monitoring ports are free
 * ones. A start that loses a route port to another process, or (without `storeDir`) whose routes do not
 * all connect in time, is tried again with new ones. Resolves once
 * {@link NatsCluster.waitUntilFormed} does. Rejects like {@link startNatsServer} or with
 * {@link NatsClusterFormationError}; nodes already started are stopped first.
 */
export async function startNatsCluster(options: NatsClusterOptions = {}): Promise<NatsCluster> {
  const nodes = options.nodes ?? 3;
  // nats-server refuses a clustered JetStream without routes, so one node is not a cluster.
  if (!Number.isInteger(nodes) || nodes < 2)
    throw new RangeError(`nodes must be an integer of at least 2, got ${nodes}`);
  const host = options.host ?? "127.0.0.1";
  const routeHost = bracketIpv6(host === "0.0.0.0" ? "127.0.0.1" : host);
  const name = options.name ?? "arbiter";
  const binary = options.binary ?? (await findNatsServer());
  for (let attempt = 1; ; attempt++) {
    let servers: NatsServerProcess[] = [];
    const clusterPorts = await reserveRoutePorts(host, nodes);
    const started = await Promise.allSettled(
      clusterPorts.map((port, index) => {
        const serverName = `n${index + 1}`;
        return startNatsServer({
          binary,
          host,
          jetstream: true,
          monitoring: true,
          serverName,
          debug: options.debug ?? false,
          detached: options.detached ?? false,
          ...(options.logDir !== undefined && { logFile: join(options.logDir, `${serverName}.log`) }),
          ...(options.storeDir !== undefined && { storeDir: join(options.storeDir, serverName) }),
          ...(index === 0 && options.port !== undefined && { port: options.port }),
          ...(options.startTimeout !== undefined && { startTimeout: options.startTimeout }),
          ...(options.extraConfig !== undefined && { extraConfig: options.extraConfig }),
          ...(options.env !== undefined && { env: options.env }),
          cluster: {
            name,
            port,
            routes: clusterPorts
              .filter((other) => other !== port)
              .map((other) => `nats-route://${routeHost}:${other}`),
          },
        });
      }),
    );
    servers = started.flatMap((result) => (result.status === "fulfilled" ? [result.value] : []));
    const failed = started.find((result) => result.status === "rejected");
    if (failed) {
      await Promise.all(servers.map((server) => server.stop()));
      // A reserved route port can be bound by another process before its node binds it; new ports then.
      if (attempt >= PORT_ATTEMPTS || !isPortTaken(failed.reason)) throw failed.reason;
      continue;
    }
    const cluster = new LocalNatsCluster(name, servers);
    try {
      await cluster.waitUntilFormed({ timeout: options.formTimeout ?? DEFAULT_FORM_TIMEOUT_MS });
      return cluster;
    } catch (err) {
      await cluster.stop();
      // A fresh cluster whose routes never all connected (seen now and then with nats-server 2.10)
      // is started again on new ports; one on a store of its own is not, since its data is the point.
      if (attempt >= PORT_ATTEMPTS || options.storeDir !== undefined || !isNatsClusterFormationError(err))
        throw err;
    }
  }
}

class LocalNatsCluster implements NatsCluster {
  readonly #name: string;
  readonly #servers: readonly NatsServerProcess[];

  constructor(name: string, servers: readonly NatsServerProcess[]) {
    this.#name = name;
    this.#servers = servers;
  }

  get servers(): readonly NatsServerProcess[] {
    return this.#servers;
  }

  get urls(): readonly string[] {
    return this.#servers.map((server) => server.url);
  }

  get url(): string {
    return this.urls.join(",");
  }

  async waitUntilFormed(options: { timeout?: number } = {}): Promise<string> {
    const size = this.#servers.length;
    let lastSeen = "nothing yet";
    return pollUntil(
      async () => {
        const views = await Promise.all(this.#servers.map((server) => readMetaCluster(server)));
        lastSeen = views
          .map((view, index) => `${this.#servers[index]?.serverName}: ${view.summary}`)
          .join("; ");
        const leader = views[0]?.leader;
        if (!leader || !views.every((view) => view.leader === leader && view.clusterSize === size))
          return undefined;
        const leaderView = views[this.#servers.findIndex((server) => server.serverName === leader)];
        return leaderView && leaderView.currentPeers === size - 1 ? leader : undefined;
      },
      {
        name: `JetStream cluster ${this.#name} to agree on a meta leader with ${size} current peers`,
        timeout: options.timeout ?? DEFAULT_FORM_TIMEOUT_MS,
        onTimeout: (message, cause) =>
          new NatsClusterFormationError(`${message} (last seen: ${lastSeen})`, { cause }),
      },
    );
  }

  async stop(): Promise<void> {
    await Promise.all(this.#servers.map((server) => server.stop()));
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }
}

/** What one node's `/jsz` says about the JetStream meta group. */
interface MetaClusterView {
  leader: string | undefined;
  clusterSize: number | undefined;
  /** Replicas the node lists as current; only the leader lists replicas. */
  currentPeers: number;
  summary: string;
}

/**
 * Reads `meta_cluster` from a node's `/jsz`. nats-server 2.9.10 answers
 * `{"name","leader","peer","cluster_size","replicas":[{"name","current","active","peer"}]}`, where
 * `leader` is missing until one is elected and only the leader lists `replicas` (the other nodes).
 */
async function readMetaCluster(server: NatsServerProcess): Promise<MetaClusterView> {
  if (!server.running || server.monitorUrl === undefined) {
    return { leader: undefined, clusterSize: undefined, currentPeers: 0, summary: "not running" };
  }
  try {
    const answer = await httpGet(`${server.monitorUrl}/jsz`);
    if (answer.status !== 200) throw new Error(`/jsz answered ${answer.status}`);
    const jsz: unknown = JSON.parse(answer.body);
    const meta = isRecord(jsz) && isRecord(jsz["meta_cluster"]) ? jsz["meta_cluster"] : {};
    const leader = typeof meta["leader"] === "string" && meta["leader"] !== "" ? meta["leader"] : undefined;
    const clusterSize = typeof meta["cluster_size"] === "number" ? meta["cluster_size"] : undefined;
    const replicas = Array.isArray(meta["replicas"]) ? meta["replicas"] : [];
    const currentPeers = replicas.filter(
      (replica) => isRecord(replica) && replica["current"] === true,
    ).length;
    return {
      leader,
      clusterSize,
      currentPeers,
      summary: `leader=${leader ?? "none"} cluster_size=${clusterSize ?? "?"} current_replicas=${currentPeers}`,
    };
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err);
    return { leader: undefined, clusterSize: undefined, currentPeers: 0, summary: `unreachable (${reason})` };
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
