import {
  accessSync,
  chmodSync,
  constants,
  existsSync,
  mkdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { join, resolve } from "node:path";
import { ADMIN_INBOX_PREFIX, WORKER_INBOX_PREFIX } from "@arbiter/embedded-nats";
import { ArbiterError, DEFAULT_PREFIX, ErrorCode, resourceNames } from "@arbiter/protocol";
import { openJetStreamStore } from "@arbiter/store";
import { createSigner, decodePublicKey, generateKey, type Signer } from "@arbiter/trust";
import { JetStreamApiError, jetstreamManager } from "@nats-io/jetstream";
import { jserrors } from "@nats-io/jetstream/internal";
import {
  type Authenticator,
  AuthorizationError,
  credsAuthenticator,
  InvalidArgumentError,
  type NatsConnection,
  PermissionViolationError,
  TimeoutError,
  UserAuthenticationExpiredError,
} from "@nats-io/nats-core";
import { connect } from "@nats-io/transport-node";
import { z } from "zod";
import { parseIntegerFlag } from "./flags.js";

/** Flags every connecting command takes. */
export interface ConnectionFlags {
  servers?: string;
  replicas?: string;
  prefix?: string;
  json?: boolean;
  verbose?: boolean;
}

/** The folder where `arbiter up` keeps its data and local admin key (`ARBITER_HOME`, default `.arbiter`). */
export function arbiterHome(): string {
  return resolve(process.env["ARBITER_HOME"] || ".arbiter");
}

/**
 * Creates {@link arbiterHome} if needed and checks it is a folder this process can write, for
 * `arbiter up`. Throws INVALID_CONFIG naming ARBITER_HOME (a file there, no permission).
 */
export function prepareArbiterHome(): string {
  const home = arbiterHome();
  try {
    mkdirSync(home, { recursive: true });
    if (!statSync(home).isDirectory()) throw new Error("not a folder");
    accessSync(home, constants.W_OK);
  } catch (err) {
    const source = process.env["ARBITER_HOME"] ? "ARBITER_HOME" : "the default ARBITER_HOME";
    throw new ArbiterError(
      ErrorCode.InvalidConfig,
      `${source} ${home} cannot hold Arbiter's data: ${(err as Error).message}`,
      { cause: err },
    );
  }
  return home;
}

const LocalState = z.object({
  url: z.string(),
  pid: z.number().int(),
  adminPublicKey: z.string(),
  startedAt: z.string(),
});
/** What a running `arbiter up` tells the other commands: where its NATS is. */
export type LocalState = z.infer<typeof LocalState>;

/** The state of a live `arbiter up` in {@link arbiterHome}, or null. */
export function readLocalState(): LocalState | null {
  const file = join(arbiterHome(), "local.json");
  if (!existsSync(file)) return null;
  try {
    const state = LocalState.parse(JSON.parse(readFileSync(file, "utf8")));
    process.kill(state.pid, 0);
    return state;
  } catch {
    return null;
  }
}

/** Records (or with null, removes) the state of this `arbiter up`. */
export function writeLocalState(state: LocalState | null): void {
  const file = join(arbiterHome(), "local.json");
  if (state === null) rmSync(file, { force: true });
  else writeFileSync(file, `${JSON.stringify(state, null, 2)}\n`);
}

/** The help of `--servers`: where a command connects when it is not given, and how it signs in. */
export const SERVERS_HELP =
  "NATS server URLs, comma-separated (env NATS_URL; default: the `arbiter up` running in this folder, else nats://127.0.0.1:4222); signs in with NATS_USER and NATS_PASSWORD, or NATS_CREDS";

/**
 * The NATS servers to use: `--servers`, else `NATS_URL`, else a running `arbiter up` in this
 * folder, else nats://127.0.0.1:4222.
 */
export function resolveServers(flags: ConnectionFlags): string[] {
  const value = flags.servers || process.env["NATS_URL"] || readLocalState()?.url || "nats://127.0.0.1:4222";
  return value
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
}

/** Replicas for streams this command creates: `--replicas`, else `ARBITER_REPLICAS`, else 1. */
export function resolveReplicas(flags: ConnectionFlags): number {
  const [raw, source] =
    flags.replicas !== undefined
      ? [flags.replicas, "--replicas"]
      : [process.env["ARBITER_REPLICAS"] || "1", "ARBITER_REPLICAS"];
  const replicas = parseIntegerFlag(raw, source, { min: 1, max: 5 });
  // JetStream replicates by majority: an even count tolerates no more failures than one less.
  if (replicas % 2 === 0) {
    throw new ArbiterError(ErrorCode.InvalidConfig, `${source} ${JSON.stringify(raw)}: expected 1, 3 or 5`);
  }
  return replicas;
}

/**
 * Whether workers publish overrides on per-host subjects by `ARBITER_CHANGES_PER_HOST`: `true` or
 * `1` on, `false`, `0` or unset off; anything else is INVALID_CONFIG naming the variable.
 */
export function resolveChangesPerHost(): boolean {
  const raw = process.env["ARBITER_CHANGES_PER_HOST"];
  if (raw === undefined || raw === "") return false;
  const value = raw.trim().toLowerCase();
  if (value === "true" || value === "1") return true;
  if (value === "false" || value === "0") return false;
  throw new ArbiterError(
    ErrorCode.InvalidConfig,
    `ARBITER_CHANGES_PER_HOST ${JSON.stringify(raw)}: expected true, false, 1 or 0`,
  );
}

/**
 * The resource prefix: `--prefix`, else `ARBITER_PREFIX`, else `arbiter`. Throws INVALID_CONFIG
 * naming the flag or variable when it cannot name Arbiter's streams and subjects.
 */
export function resolvePrefix(flags: ConnectionFlags): string {
  const prefix = flags.prefix || process.env["ARBITER_PREFIX"] || DEFAULT_PREFIX;
  try {
    resourceNames(prefix);
  } catch (err) {
    throw new ArbiterError(
      ErrorCode.InvalidConfig,
      `${flags.prefix ? "--prefix" : "ARBITER_PREFIX"}: ${(err as Error).message}`,
      { cause: err },
    );
  }
  return prefix;
}

/** How {@link connectNats} connects beyond the servers and the client name. */
export interface ConnectOptions {
  /** Wait for the first server (default: `forever`). */
  waitOnFirstConnect?: boolean;
  /**
   * The connection's inbox prefix (nats.js `inboxPrefix`): this, else `NATS_INBOX_PREFIX`, else
   * the admins' own `_INBOX_arbiter_admin`, which the shipped permissions reserve for them.
   */
  inboxPrefix?: string;
  /** A `.creds` file to authenticate with instead of what the environment says. */
  credsFile?: string;
}

/**
 * Connects to NATS. Commands fail fast when no server answers; a worker (`forever`) keeps
 * reconnecting for as long as it runs, and waits for the first server unless `waitOnFirstConnect`
 * is false (a follower such as `decisions tail` fails fast, then keeps reconnecting).
 */
export async function connectNats(
  servers: string[],
  name: string,
  forever = false,
  { waitOnFirstConnect = forever, inboxPrefix, credsFile }: ConnectOptions = {},
): Promise<NatsConnection> {
  const auth = natsAuth(credsFile);
  const prefix = inboxPrefix || process.env["NATS_INBOX_PREFIX"] || ADMIN_INBOX_PREFIX;
  try {
    return await connect({
      servers,
      name,
      ...auth,
      inboxPrefix: prefix,
      timeout: 5000,
      maxReconnectAttempts: forever ? -1 : 10,
      reconnectTimeWait: 500,
      waitOnFirstConnect,
      // Async stack traces cost an Error object per request and per JetStream publish.
      noAsyncTraces: true,
    });
  } catch (err) {
    // A server that answers but refuses the credentials is there: starting one would not help.
    if (err instanceof AuthorizationError || err instanceof UserAuthenticationExpiredError) {
      throw new ArbiterError(
        ErrorCode.InvalidConfig,
        `NATS at ${servers.join(",")} refused ${describeAuth(credsFile)}: ${err.message}. ${credentialsHint(servers)}`,
        { cause: err },
      );
    }
    // Settings the client refuses before it reaches any server: no NATS to start would help.
    const refusedSetting = unusableSetting(err, servers, prefix, credsFile);
    if (refusedSetting !== null)
      throw new ArbiterError(ErrorCode.InvalidConfig, refusedSetting, { cause: err });
    throw new ArbiterError(
      ErrorCode.StoreUnavailable,
      `cannot connect to NATS at ${servers.join(",")}: ${(err as Error).message}. Start one with \`arbiter up\`, or pass --servers / set NATS_URL.`,
      { cause: err },
    );
  }
}

/**
 * What is wrong, naming the setting, when the NATS client refused one of its own settings (a
 * credentials file it cannot parse, an inbox prefix, a server URL) rather than failing to reach
 * a server; null otherwise.
 */
function unusableSetting(
  err: unknown,
  servers: readonly string[],
  inboxPrefix: string,
  credsFile: string | undefined,
): string | null {
  const message = err instanceof Error ? err.message : String(err);
  if (message === "unable to parse credentials")
    return `${describeAuth(credsFile)}: ${message}: a .creds file holds a user JWT and its nkey seed (\`arbiter nats config DIR --jwt\` writes them)`;
  if (err instanceof InvalidArgumentError && message.includes("prefix"))
    return `the NATS inbox prefix ${JSON.stringify(inboxPrefix)} (NATS_INBOX_PREFIX, or a worker's --nats-inbox-prefix): ${message}`;
  if (err instanceof TypeError && message === "Invalid URL")
    return `--servers (or NATS_URL) ${servers.join(",")}: ${message}`;
  return null;
}

/**
 * A failure whose cause is NATS refusing the credentials a permission (the admin's inbox to a
 * host's or worker's credentials) becomes INVALID_CONFIG naming the credentials, the subject and
 * the role whose credentials the command needs: it is not missing streams nor JetStream being off,
 * which the wrapped message would say. A bare request timeout becomes STORE_UNAVAILABLE saying
 * NATS did not answer. Any other error is returned as it is.
 */
export function explainNatsFailure(err: unknown): unknown {
  // A request NATS never answered, unexplained by the command: say so, not "timeout" (exit 1).
  if (!(err instanceof ArbiterError) && causedBy(err, TimeoutError)) {
    return new ArbiterError(
      ErrorCode.StoreUnavailable,
      `NATS did not answer a request within 5 s (${(err as Error).message}): ${TIMEOUT_HINT}`,
      { cause: err },
    );
  }
  const cause = causeOf(err, PermissionViolationError);
  if (cause === null) return err;
  const what = cause.operation === "publish" ? "publish on" : "subscribe to";
  // The connection's own inbox tells whose credentials the command needs: a worker's inbox
  // prefix is refused to another role's; any other subject is a permission of the role itself.
  const role = cause.subject.startsWith(`${WORKER_INBOX_PREFIX}.`)
    ? "worker"
    : cause.subject.startsWith(`${ADMIN_INBOX_PREFIX}.`)
      ? "admin"
      : null;
  const needs =
    role === null
      ? 'these credentials\' permissions do not allow it (the shipped ones: `arbiter nats config DIR`, README "Deploying on NATS")'
      : `this command needs ${role === "worker" ? "a worker's" : "an admin's"} credentials. ${roleCredentialsHint(role)}`;
  return new ArbiterError(
    ErrorCode.InvalidConfig,
    `NATS refused ${describeAuth(undefined)} permission to ${what} ${JSON.stringify(cause.subject)} (${cause.message}): ${needs}`,
    { cause: err },
  );
}

/** What a request NATS did not answer may mean, for the messages that say so. */
const TIMEOUT_HINT =
  "the server is overloaded or its JetStream cluster is short of a node; run the command again, and check the servers";

/** `err` or the first of its causes (eight deep at most) that is an instance of `type`; null when none is. */
function causeOf<T extends Error>(err: unknown, type: abstract new (...args: never[]) => T): T | null {
  let cause: unknown = err;
  for (let depth = 0; depth < 8 && cause instanceof Error; depth++) {
    if (cause instanceof type) return cause;
    cause = cause.cause;
  }
  return null;
}

/** True when `err` or one of its causes is an instance of `type`. */
function causedBy(err: unknown, type: abstract new (...args: never[]) => Error): boolean {
  return causeOf(err, type) !== null;
}

/**
 * STORE_UNAVAILABLE for a JetStream request the server took and never answered: naming the server,
 * since missing streams (a 404) and a JetStream that does not answer call for different things.
 */
function jetStreamTimedOut(nc: NatsConnection, cause: unknown): ArbiterError {
  return new ArbiterError(
    ErrorCode.StoreUnavailable,
    `NATS server ${serverOf(nc)} did not answer a JetStream request within 5 s: ${TIMEOUT_HINT}`,
    { cause },
  );
}

/** Where a role's credentials are: this folder's `arbiter up --secure`, else the shipped users. */
function roleCredentialsHint(role: "admin" | "worker"): string {
  const file = join(arbiterHome(), "secure", `${role}.creds`);
  if (existsSync(file))
    return `This folder's \`arbiter up --secure\` keeps them in ${file}: export NATS_CREDS=${file}`;
  return `Sign in as arbiter-${role} (NATS_USER and NATS_PASSWORD, deploy/nats/accounts.conf) or with the ${role}.creds of \`arbiter nats config DIR --jwt\` (NATS_CREDS).`;
}

/**
 * What to set when NATS refuses the credentials: on the NATS of this folder's `arbiter up
 * --secure`, its admin credentials file; elsewhere the variables.
 */
function credentialsHint(servers: readonly string[]): string {
  const local = readLocalState();
  const admin = join(arbiterHome(), "secure", "admin.creds");
  if (local && servers.join(",") === local.url && existsSync(admin)) {
    return `This folder's \`arbiter up --secure\` keeps the admin's credentials in ${admin}: export NATS_CREDS=${admin}`;
  }
  return "Set NATS_USER and NATS_PASSWORD, or NATS_CREDS (see deploy/nats/accounts.conf).";
}

/** Which credentials {@link natsAuth} used, for messages (never the secret itself). */
function describeAuth(given: string | undefined): string {
  if (given) return `the credentials in ${given}`;
  if (process.env["NATS_CREDS"]) return `the credentials in NATS_CREDS (${process.env["NATS_CREDS"]})`;
  const user = process.env["NATS_USER"];
  return user
    ? `NATS_USER ${JSON.stringify(user)} and its NATS_PASSWORD`
    : "a connection without credentials";
}

/**
 * Credentials for NATS from the environment: `NATS_CREDS` (a JWT credentials file), else
 * `NATS_USER` and `NATS_PASSWORD`, else none; `credsFile` wins over all of them.
 */
function natsAuth(
  given?: string,
): { authenticator: Authenticator } | { user: string; pass: string } | Record<string, never> {
  const credsFile = given ?? process.env["NATS_CREDS"];
  if (credsFile) {
    try {
      return { authenticator: credsAuthenticator(readFileSync(credsFile)) };
    } catch (err) {
      throw new ArbiterError(ErrorCode.InvalidConfig, `NATS_CREDS ${credsFile}: ${(err as Error).message}`, {
        cause: err,
      });
    }
  }
  const user = process.env["NATS_USER"];
  return user ? { user, pass: process.env["NATS_PASSWORD"] ?? "" } : {};
}

/** Path of the local admin seed that `arbiter up` creates. */
export function localAdminSeedFile(): string {
  return join(arbiterHome(), "admin.seed");
}

/** Reads the local admin seed, creating it (mode 0600) when `create` and it is missing. */
export function localAdminSeed(create: boolean): string | null {
  const file = localAdminSeedFile();
  if (existsSync(file)) return readFileSync(file, "utf8").trim();
  if (!create) return null;
  mkdirSync(arbiterHome(), { recursive: true });
  const key = generateKey("O");
  writeFileSync(file, `${key.seed}\n`, { mode: 0o600 });
  return key.seed;
}

/**
 * The seed of `arbiter up`'s local worker number `index`, in ARBITER_HOME/workers (mode 0600),
 * created when missing.
 */
export function localWorkerSeed(index: number): string {
  const file = localWorkerSeedFile(index);
  if (existsSync(file)) return readFileSync(file, "utf8").trim();
  return replaceLocalWorkerSeed(index);
}

/** Where `arbiter up` keeps the seed of its worker `local-<index>`. */
export function localWorkerSeedFile(index: number): string {
  return join(arbiterHome(), "workers", `local-${index}.seed`);
}

/** Makes a new seed for `arbiter up`'s worker `local-<index>` (mode 0600), replacing any, and returns it. */
export function replaceLocalWorkerSeed(index: number): string {
  mkdirSync(join(arbiterHome(), "workers"), { recursive: true, mode: 0o700 });
  const file = localWorkerSeedFile(index);
  const key = generateKey("N");
  writeFileSync(file, `${key.seed}\n`, { mode: 0o600 });
  chmodSync(file, 0o600);
  return key.seed;
}

/**
 * The admin key that signs rule events: `ARBITER_ADMIN_SEED`, else the local key of
 * `arbiter up`. Throws INVALID_CONFIG saying how to provide one, or naming the one that is not a seed.
 */
export function adminSigner(): Signer {
  const fromEnv = process.env["ARBITER_ADMIN_SEED"];
  const seed = fromEnv || localAdminSeed(false);
  if (!seed) {
    throw new ArbiterError(
      ErrorCode.InvalidConfig,
      `no admin key: set ARBITER_ADMIN_SEED to an operator seed (SO…; \`arbiter trust keygen admin\` makes one), or run \`arbiter up\` in this folder (there is no local key in ${arbiterHome()}; ARBITER_HOME is relative to the folder a command runs in, so run it where \`arbiter up\` runs, or set ARBITER_HOME)`,
    );
  }
  try {
    return createSigner(seed, "O");
  } catch (err) {
    const source = fromEnv ? "ARBITER_ADMIN_SEED" : localAdminSeedFile();
    throw new ArbiterError(ErrorCode.InvalidConfig, `${source}: ${(err as Error).message}`, { cause: err });
  }
}

/**
 * Admin public keys whose rule events count: `--admin-keys`, else `ARBITER_ADMIN_KEYS`
 * (comma-separated `O…` keys), plus the signing key when one is configured.
 */
export function resolveAdminKeys(flag: string | undefined, signer?: Signer): string[] {
  const listed = (flag || process.env["ARBITER_ADMIN_KEYS"] || "")
    .split(",")
    .map((k) => k.trim())
    .filter((k) => k.length > 0);
  for (const key of listed) {
    try {
      decodePublicKey(key, "O");
    } catch (err) {
      throw new ArbiterError(
        ErrorCode.InvalidConfig,
        `admin key ${JSON.stringify(key)}: ${(err as Error).message}`,
      );
    }
  }
  return [...new Set([...listed, ...(signer ? [signer.publicKey] : [])])];
}

/**
 * Worker keys enrolled by configuration: `--worker-keys`, else `ARBITER_WORKER_KEYS`
 * (comma-separated `N…` keys). Throws INVALID_CONFIG naming a key that is not one.
 */
export function resolveWorkerKeys(flag: string | undefined): string[] {
  const source = flag !== undefined ? "--worker-keys" : "ARBITER_WORKER_KEYS";
  const listed = (flag ?? process.env["ARBITER_WORKER_KEYS"] ?? "")
    .split(",")
    .map((k) => k.trim())
    .filter((k) => k.length > 0);
  for (const key of listed) {
    try {
      if (key.length !== 56) throw new Error(`${key.length} characters, not 56`);
      decodePublicKey(key, "N");
    } catch (err) {
      throw new ArbiterError(
        ErrorCode.InvalidConfig,
        `${source}: ${JSON.stringify(key)} is not a worker public key (N…): ${(err as Error).message}`,
        { cause: err },
      );
    }
  }
  return listed;
}

/** The server a connection is using, as a URL, for output and error messages. */
export function serverOf(nc: NatsConnection): string {
  const server = nc.getServer();
  return server.includes("://") ? server : `nats://${server}`;
}

/** With `-v`, says on stderr which NATS server the command used. */
export function reportServer(flags: ConnectionFlags, nc: NatsConnection): void {
  if (flags.verbose) process.stderr.write(`arbiter: using NATS server ${serverOf(nc)}\n`);
}

/**
 * STORE_UNAVAILABLE for a server without JetStream, where neither `arbiter up`'s streams nor a
 * worker can be: naming the server and what it lacks.
 */
function withoutJetStream(nc: NatsConnection, cause: unknown): ArbiterError {
  return new ArbiterError(
    ErrorCode.StoreUnavailable,
    `NATS server ${serverOf(nc)} has no JetStream (jetstream is not enabled), so it holds no Arbiter streams; point --servers or NATS_URL at a JetStream server (nats-server -js), or run \`arbiter up\``,
    { cause },
  );
}

/**
 * Opens Arbiter's existing streams and bucket without creating anything, for read-only commands.
 * Throws STORE_UNAVAILABLE naming the server when they are not there (or JetStream is not).
 */
export async function openExistingStore(
  nc: NatsConnection,
  flags: ConnectionFlags,
): Promise<Awaited<ReturnType<typeof openJetStreamStore>>> {
  const prefix = resolvePrefix(flags);
  const names = resourceNames(prefix);
  const missing = (detail: string, cause?: unknown) =>
    new ArbiterError(
      ErrorCode.StoreUnavailable,
      `NATS server ${serverOf(nc)}: no Arbiter streams there (the admin's first \`arbiter rules apply\` makes them, as does \`arbiter up\`)${detail}`,
      cause === undefined ? undefined : { cause },
    );
  try {
    const jsm = await jetstreamManager(nc, { timeout: 5000 });
    for (const stream of [names.rulesStream, names.decisionsStream]) {
      try {
        await jsm.streams.info(stream);
      } catch (err) {
        if (err instanceof JetStreamApiError && err.status === 404)
          throw missing(`: stream ${stream} not found`);
        throw err;
      }
    }
  } catch (err) {
    if (err instanceof ArbiterError) throw err;
    if (err instanceof jserrors.JetStreamNotEnabled) throw withoutJetStream(nc, err);
    if (causedBy(err, TimeoutError)) throw jetStreamTimedOut(nc, err);
    throw missing(`: ${(err as Error).message}`, err);
  }
  try {
    return await openJetStreamStore(nc, { prefix, create: false });
  } catch (err) {
    if (causedBy(err, TimeoutError)) throw jetStreamTimedOut(nc, err);
    throw missing(`: ${(err as Error).message}`, err);
  }
}
