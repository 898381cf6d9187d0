import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { createWriteStream, mkdirSync, rmSync, type WriteStream } from "node:fs";
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { NatsServerStartError } from "./errors.js";
import { findNatsServer } from "./find-nats-server.js";
import { pollUntil } from "./poll.js";
import { httpGet, probeTcp } from "./probes.js";
import { bracketIpv6, renderServerConfig } from "./server-config.js";

/** Membership of one server in a cluster. */
export interface NatsServerClusterOptions {
  /** Cluster name; all nodes of one cluster share it. */
  name: string;
  /** Port other nodes route to; -1 (default) picks a free one, reused on restart. */
  port?: number;
  /** Route URLs of the other nodes, e.g. `nats-route://127.0.0.1:6222`. */
  routes?: readonly string[];
}

/** How {@link startNatsServer} runs a server. Every field has a default suited to tests. */
export interface NatsServerOptions {
  /** Address all listeners bind to; default "127.0.0.1". */
  host?: string;
  /** Client port; default -1 (a free port, read back from the server's ports file). */
  port?: number;
  /** Enable JetStream; default true. */
  jetstream?: boolean;
  /** JetStream store directory, kept on stop; default a fresh temporary directory removed on stop. */
  storeDir?: string;
  /** Enable the HTTP monitoring endpoint on a free port; default true. Readiness then includes `/healthz`. */
  monitoring?: boolean;
  /** `server_name`; default `arbiter-nats-<random hex>`. Kept across restarts. */
  serverName?: string;
  /** Join a cluster; default none. */
  cluster?: NatsServerClusterOptions;
  /** Also append the server's log to this file; its last lines are always kept for error messages. */
  logFile?: string;
  /** Debug logging; default false. */
  debug?: boolean;
  /**
   * Run the server in its own process group, so a terminal's Ctrl-C reaches only the parent,
   * which can then drain its clients before stopping the server; default false.
   */
  detached?: boolean;
  /**
   * More configuration, appended to the generated file as it is: accounts, users and
   * permissions (for example the contents of deploy/nats/accounts.conf).
   */
  extraConfig?: string;
  /** Extra environment for the server process (config files may read `$VARIABLES` from it). */
  env?: Record<string, string>;
  /** Deadline in milliseconds for the server to become ready, per start or restart; default 20 000. */
  startTimeout?: number;
  /** Path of the `nats-server` binary; default {@link findNatsServer}'s answer. */
  binary?: string;
}

/** A running (or stopped) `nats-server` child process. Disposing it stops it. */
export interface NatsServerProcess extends AsyncDisposable {
  /** Client URL, e.g. "nats://127.0.0.1:41234". Stays the same across restarts. */
  readonly url: string;
  /** Client port. */
  readonly port: number;
  /** Monitoring base URL ("http://127.0.0.1:PORT"), or `undefined` when monitoring is off. */
  readonly monitorUrl: string | undefined;
  /** Pid of the current (or, once stopped, the last) process. */
  readonly pid: number;
  /** JetStream store directory (the server keeps its data in `<storeDir>/jetstream`). */
  readonly storeDir: string;
  /** The server's `server_name`. */
  readonly serverName: string;
  /** True while the process is alive. */
  readonly running: boolean;
  /**
   * Resolves, once the current process has ended (stopped, killed or crashed), with how it ended:
   * "exited with code 1", "was killed by SIGKILL". After a restart it follows the new process.
   */
  exited(): Promise<string>;
  /** SIGTERM, SIGKILL after 5 s, wait for exit, then remove the temporary directories. Idempotent. */
  stop(): Promise<void>;
  /** SIGKILL at once and wait for exit; keeps the store directory (for crash tests). */
  kill(): Promise<void>;
  /**
   * Starts the server again on the same ports, store directory and cluster config (after `kill`,
   * `stop`, or stopping it gracefully first if it is running). After `stop` a temporary store
   * directory has been removed, so JetStream then starts empty. Rejects like {@link startNatsServer}.
   */
  restart(): Promise<void>;
}

/**
 * Starts one `nats-server` child process and resolves once it accepts TCP connections and, with
 * monitoring, `/healthz` answers 200 (`?js-enabled-only=true` for cluster nodes, whose full health
 * needs a meta leader). Rejects with {@link NatsServerStartError} (carrying the server's last log
 * lines) when it exits early or misses `startTimeout`, or with `NatsServerNotFoundError`.
 */
export async function startNatsServer(options: NatsServerOptions = {}): Promise<NatsServerProcess> {
  const binary = options.binary ?? (await findNatsServer());
  return ChildNatsServer.start(binary, options);
}

const STOP_GRACE_MS = 5_000;
const DEFAULT_START_TIMEOUT_MS = 20_000;
const LOG_TAIL_LINES = 40;
const UNKNOWN_PORT = -1;

/**
 * Pids of servers still alive and work dirs not yet removed by `stop()`: when this process exits
 * (also on an uncaught exception) the servers are killed and the directories removed, so a crashed
 * test run leaves neither behind. Death by signal skips 'exit'; a terminal's Ctrl-C still reaches the
 * servers, which share our process group.
 */
const livePids = new Set<number>();
const liveWorkDirs = new Set<string>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on("exit", () => {
    for (const pid of livePids) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // Already gone.
      }
    }
    for (const dir of liveWorkDirs) {
      try {
        rmSync(dir, { recursive: true, force: true, maxRetries: 2 });
      } catch {
        // Best effort: the process is exiting anyway.
      }
    }
  });
}

class ChildNatsServer implements NatsServerProcess {
  readonly #binary: string;
  readonly #detached: boolean;
  readonly #extraConfig: string | undefined;
  readonly #env: Record<string, string>;
  readonly #workDir: string;
  readonly #host: string;
  readonly #storeDir: string;
  readonly #jetstream: boolean;
  readonly #serverName: string;
  readonly #cluster: { name: string; routes: readonly string[] } | undefined;
  readonly #logFile: string | undefined;
  readonly #debug: boolean;
  readonly #startTimeout: number;
  readonly #logTail = new LogTail(LOG_TAIL_LINES);
  #port: number;
  #monitorPort: number | undefined;
  #clusterPort: number | undefined;
  #pid = 0;
  #child: ChildProcess | undefined;
  #exitReason: string | undefined;
  #exited: Promise<void> = Promise.resolve();
  #stopping: Promise<void> | undefined;

  /** Creates the working directory, launches, and cleans up again if the first launch fails. */
  static async start(binary: string, options: NatsServerOptions): Promise<ChildNatsServer> {
    const port = options.port ?? UNKNOWN_PORT;
    if (!Number.isInteger(port) || port < -1 || port > 65_535) {
      throw new RangeError(`port must be an integer from -1 to 65535, got ${port}`);
    }
    const workDir = await mkdtemp(join(tmpdir(), "arbiter-nats-"));
    const server = new ChildNatsServer(binary, workDir, port, options);
    try {
      await server.#launch();
    } catch (err) {
      await server.stop().catch(() => undefined);
      throw err;
    }
    return server;
  }

  private constructor(binary: string, workDir: string, port: number, options: NatsServerOptions) {
    this.#binary = binary;
    this.#workDir = workDir;
    this.#host = options.host ?? "127.0.0.1";
    this.#port = port === 0 ? UNKNOWN_PORT : port;
    this.#storeDir = options.storeDir ?? workDir;
    this.#jetstream = options.jetstream ?? true;
    this.#monitorPort = (options.monitoring ?? true) ? UNKNOWN_PORT : undefined;
    this.#serverName = options.serverName ?? `arbiter-nats-${randomBytes(3).toString("hex")}`;
    this.#cluster = options.cluster && { name: options.cluster.name, routes: options.cluster.routes ?? [] };
    this.#clusterPort = options.cluster ? (options.cluster.port ?? UNKNOWN_PORT) : undefined;
    this.#logFile = options.logFile;
    this.#debug = options.debug ?? false;
    this.#detached = options.detached ?? false;
    this.#extraConfig = options.extraConfig;
    this.#env = options.env ?? {};
    this.#startTimeout = options.startTimeout ?? DEFAULT_START_TIMEOUT_MS;
  }

  get url(): string {
    return `nats://${bracketIpv6(this.#reachableHost)}:${this.#port}`;
  }

  get port(): number {
    return this.#port;
  }

  get monitorUrl(): string | undefined {
    return this.#monitorPort === undefined
      ? undefined
      : `http://${bracketIpv6(this.#reachableHost)}:${this.#monitorPort}`;
  }

  get pid(): number {
    return this.#pid;
  }

  get storeDir(): string {
    return this.#storeDir;
  }

  get serverName(): string {
    return this.#serverName;
  }

  get running(): boolean {
    return this.#child !== undefined && this.#exitReason === undefined;
  }

  async exited(): Promise<string> {
    await this.#exited;
    return this.#exitReason ?? "exited";
  }

  stop(): Promise<void> {
    this.#stopping ??= this.#stopAndRemoveDirs();
    return this.#stopping;
  }

  async kill(): Promise<void> {
    if (this.running) this.#child?.kill("SIGKILL");
    await this.#exited;
  }

  async restart(): Promise<void> {
    if (this.#stopping) await this.#stopping.catch(() => undefined);
    else await this.#terminate();
    this.#stopping = undefined;
    await this.#launch();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }

  /** A wildcard bind address is not something to connect to; use loopback instead. */
  get #reachableHost(): string {
    if (this.#host === "0.0.0.0" || this.#host === "") return "127.0.0.1";
    if (this.#host === "::" || this.#host === "[::]") return "::1";
    return this.#host;
  }

  async #launch(): Promise<void> {
    installExitHook();
    liveWorkDirs.add(this.#workDir);
    await mkdir(this.#workDir, { recursive: true });
    if (this.#jetstream) await mkdir(this.#storeDir, { recursive: true });
    const configFile = join(this.#workDir, "nats-server.conf");
    await writeFile(
      configFile,
      renderServerConfig({
        serverName: this.#serverName,
        host: this.#host,
        port: this.#port,
        monitorPort: this.#monitorPort,
        storeDir: this.#jetstream ? this.#storeDir : undefined,
        cluster:
          this.#cluster && this.#clusterPort !== undefined
            ? { ...this.#cluster, port: this.#clusterPort }
            : undefined,
        debug: this.#debug,
        extra: this.#extraConfig,
      }),
    );
    this.#spawn(["-c", configFile, "--ports_file_dir", this.#workDir]);
    try {
      await this.#waitUntilReady();
    } catch (err) {
      await this.kill();
      throw err;
    }
  }

  #spawn(args: readonly string[]): void {
    this.#logTail.clear();
    this.#exitReason = undefined;
    let logStream: WriteStream | undefined;
    if (this.#logFile) {
      mkdirSync(dirname(this.#logFile), { recursive: true });
      logStream = createWriteStream(this.#logFile, { flags: "a" });
      // A log file that cannot be written must not take the server (or its parent) down.
      logStream.on("error", () => {});
    }
    const child = spawn(this.#binary, args, {
      stdio: ["ignore", "pipe", "pipe"],
      detached: this.#detached,
      env: { ...process.env, ...this.#env },
    });
    this.#child = child;
    if (child.pid !== undefined) {
      this.#pid = child.pid;
      livePids.add(child.pid);
    }
    for (const stream of [child.stdout, child.stderr]) {
      if (!stream) continue;
      if (logStream) stream.on("data", (chunk: Buffer) => logStream.write(chunk));
      createInterface({ input: stream, crlfDelay: Number.POSITIVE_INFINITY }).on("line", (line) =>
        this.#logTail.push(line),
      );
    }
    this.#exited = new Promise((resolve) => {
      const done = (reason: string): void => {
        this.#exitReason ??= reason;
        if (child.pid !== undefined) livePids.delete(child.pid);
        logStream?.end();
        resolve();
      };
      child.once("error", (err) => {
        // 'error' without a pid means spawn itself failed and no 'close' follows reliably.
        if (child.pid === undefined) done(`could not be started (${err.message})`);
      });
      child.once("exit", (code, signal) => {
        this.#exitReason = signal ? `was killed by ${signal}` : `exited with code ${code}`;
        if (child.pid !== undefined) livePids.delete(child.pid);
      });
      child.once("close", (code, signal) =>
        done(signal ? `was killed by ${signal}` : `exited with code ${code}`),
      );
    });
  }

  async #waitUntilReady(): Promise<void> {
    const pid = this.#pid;
    const healthz = this.#cluster ? "/healthz?js-enabled-only=true" : "/healthz";
    await pollUntil(
      async () => {
        if ([this.#port, this.#monitorPort, this.#clusterPort].includes(UNKNOWN_PORT)) {
          if (!(await this.#readPortsFile(pid))) return undefined;
        }
        await probeTcp(this.#reachableHost, this.#port);
        if (this.#monitorPort !== undefined) {
          const answer = await httpGet(`${this.monitorUrl}${healthz}`);
          if (answer.status !== 200)
            throw new Error(`GET ${healthz} answered ${answer.status}: ${answer.body.trim()}`);
        }
        return true;
      },
      {
        name: `nats-server ${this.#serverName} to become ready`,
        timeout: this.#startTimeout,
        fail: () =>
          this.#exitReason === undefined
            ? undefined
            : new NatsServerStartError(
                `nats-server ${this.#serverName} did not become ready: it ${this.#exitReason}`,
                this.#logTail.lines(),
              ),
        onTimeout: (message, cause) => new NatsServerStartError(message, this.#logTail.lines(), { cause }),
      },
    );
  }

  /**
   * Reads the ports the server chose from `<workDir>/<binary name>_<pid>.ports`, which nats-server
   * writes once all listeners are up: `{"nats":[url],"monitoring":[url],"cluster":[url]}`.
   * Resolves false while the file is missing; a half-written file throws and is read again.
   */
  async #readPortsFile(pid: number): Promise<boolean> {
    const name = (await readdir(this.#workDir)).find((file) => file.endsWith(`_${pid}.ports`));
    if (!name) return false;
    const ports: unknown = JSON.parse(await readFile(join(this.#workDir, name), "utf8"));
    if (typeof ports !== "object" || ports === null) throw new Error(`unexpected ports file ${name}`);
    const listed = ports as Record<string, unknown>;
    this.#port = firstPort(listed["nats"], "nats", name);
    if (this.#monitorPort !== undefined)
      this.#monitorPort = firstPort(listed["monitoring"], "monitoring", name);
    if (this.#clusterPort !== undefined) this.#clusterPort = firstPort(listed["cluster"], "cluster", name);
    return true;
  }

  /** SIGTERM, escalating to SIGKILL after the grace period; resolves once the process is gone. */
  async #terminate(): Promise<void> {
    const child = this.#child;
    if (!child || !this.running) return this.#exited;
    child.kill("SIGTERM");
    const escalation = setTimeout(() => child.kill("SIGKILL"), STOP_GRACE_MS);
    try {
      await this.#exited;
    } finally {
      clearTimeout(escalation);
    }
  }

  async #stopAndRemoveDirs(): Promise<void> {
    await this.#terminate();
    // A default store dir is the work dir itself, so this removes it too; a given one is kept.
    await rm(this.#workDir, { recursive: true, force: true });
    liveWorkDirs.delete(this.#workDir);
  }
}

function firstPort(urls: unknown, kind: string, file: string): number {
  const first: unknown = Array.isArray(urls) ? urls[0] : undefined;
  const port = typeof first === "string" ? Number(new URL(first).port) : Number.NaN;
  if (!Number.isInteger(port) || port <= 0) throw new Error(`ports file ${file} lists no ${kind} port`);
  return port;
}

/** The last lines a server logged, for error messages. */
class LogTail {
  readonly #max: number;
  #lines: string[] = [];

  constructor(max: number) {
    this.#max = max;
  }

  push(line: string): void {
    this.#lines.push(line);
    if (this.#lines.length > this.#max) this.#lines.splice(0, this.#lines.length - this.#max);
  }

  clear(): void {
    this.#lines = [];
  }

  lines(): readonly string[] {
    return [...this.#lines];
  }
}
