import { createHash } from "node:crypto";
import { createSigner, encodeJwt, generateKey } from "@arbiter/trust";
import {
  ARBITER_ACCOUNT,
  accountLinks,
  hostJetStreamLinks,
  LATTICE_ACCOUNT,
  LATTICE_JETSTREAM_ACCOUNT,
  NATS_ROLES,
  type NatsRole,
  type PermissionOptions,
  ROLE_ACCOUNT,
  type RolePermissions,
  rolePermissions,
} from "./permissions.js";

// NATS JWT v2 (nats-io/jwt v2): header {"typ":"JWT","alg":"ed25519-nkey"}; claims jti, iat, iss,
// name, sub (in that order, as the Go library writes them) and a `nats` object whose `type` and
// `version: 2` say what it is. The jti is the unpadded base32 of SHA-512/256 over the JSON of the
// standard claims alone (iat, iss, name, sub; no jti, no `nats`), as the Go library's
// ClaimsData.hash computes it. nats-server does not check it; nsc and the resolvers show it.

const NATS_JWT_HEADER = { typ: "JWT", alg: "ed25519-nkey" } as const;
const NO_LIMIT = -1;
/** nats-server's `allow_responses: true`: one answer per received request, within two minutes. */
const RESPONSE_PERMISSION = { max: 1, ttl: 120_000_000_000 } as const;

/** One NATS identity: its nkey seed (secret), its public key and the JWT that vouches for it. */
export interface NatsIdentity {
  readonly publicKey: string;
  readonly seed: string;
  readonly jwt: string;
}

/**
 * Everything an operator-mode server and its clients need for one lattice: the operator, a system
 * account, Arbiter's account, the lattice's (hosts) and the lattice's JetStream account, linked as in
 * the password form (`renderAccountsConfig`), and one user per role with its allow-lists.
 */
export interface OperatorSetup {
  readonly operator: NatsIdentity;
  readonly systemAccount: NatsIdentity;
  readonly accounts: Readonly<
    Record<typeof ARBITER_ACCOUNT | typeof LATTICE_ACCOUNT | typeof LATTICE_JETSTREAM_ACCOUNT, NatsIdentity>
  >;
  readonly users: Readonly<Record<NatsRole, NatsIdentity>>;
}

function base32(bytes: Uint8Array): string {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  let out = "";
  let bits = 0;
  let value = 0;
  for (const byte of bytes) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += alphabet[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += alphabet[(value << (5 - bits)) & 31];
  return out;
}

/** The jti of a NATS JWT v2 whose standard claims are `standard` (see the comment at the top). */
export function natsJwtId(standard: { iat: number; iss: string; name: string; sub: string }): string {
  const json = JSON.stringify({
    iat: standard.iat,
    iss: standard.iss,
    name: standard.name,
    sub: standard.sub,
  });
  return base32(createHash("sha512-256").update(json).digest());
}

/**
 * Signs NATS JWT v2 claims with `issuerSeed`: sets iss and iat (seconds, `now`) and the jti.
 * Throws `InvalidKeyError` when the seed is not an operator or account seed.
 */
export function signNatsClaims(
  claims: { sub: string; name: string; nats: Record<string, unknown> },
  issuerSeed: string,
  now: Date = new Date(),
): string {
  const signer = createSigner(issuerSeed, ["O", "A"]);
  const standard = {
    iat: Math.floor(now.getTime() / 1000),
    iss: signer.publicKey,
    name: claims.name,
    sub: claims.sub,
  };
  return encodeJwt(NATS_JWT_HEADER, { jti: natsJwtId(standard), ...standard, nats: claims.nats }, signer);
}

/** The `nats` claims of a user JWT with `permissions` (nats-io/jwt v2 `User`). */
export function userNatsClaims(permissions: RolePermissions): Record<string, unknown> {
  const allowDeny = (p: { allow: readonly string[]; deny: readonly string[] }) => ({
    allow: [...p.allow],
    ...(p.deny.length > 0 ? { deny: [...p.deny] } : {}),
  });
  return {
    pub: allowDeny(permissions.publish),
    sub: allowDeny(permissions.subscribe),
    ...(permissions.allowResponses ? { resp: RESPONSE_PERMISSION } : {}),
    subs: NO_LIMIT,
    data: NO_LIMIT,
    payload: NO_LIMIT,
    type: "user",
    version: 2,
  };
}

function accountNatsClaims(jetstream: boolean, links: Record<string, unknown> = {}): Record<string, unknown> {
  const storage = jetstream ? NO_LIMIT : 0;
  return {
    ...links,
    limits: {
      subs: NO_LIMIT,
      data: NO_LIMIT,
      payload: NO_LIMIT,
      imports: NO_LIMIT,
      exports: NO_LIMIT,
      wildcards: true,
      conn: NO_LIMIT,
      leaf: NO_LIMIT,
      mem_storage: storage,
      disk_storage: storage,
      streams: jetstream ? NO_LIMIT : 0,
      consumer: jetstream ? NO_LIMIT : 0,
    },
    default_permissions: { pub: {}, sub: {} },
    type: "account",
    version: 2,
  };
}

/**
 * Generates fresh keys and JWTs for an operator-mode deployment of the same permissions as
 * {@link rolePermissions}: one operator, a system account, the lattice account, one user per role.
 */
export function createOperatorSetup(options: PermissionOptions = {}, now: Date = new Date()): OperatorSetup {
  const operatorKey = generateKey("O");
  const systemKey = generateKey("A");
  const arbiterKey = generateKey("A");
  const latticeKey = generateKey("A");
  const latticeJsKey = generateKey("A");
  const operatorJwt = signNatsClaims(
    {
      sub: operatorKey.publicKey,
      name: "arbiter",
      nats: { system_account: systemKey.publicKey, type: "operator", version: 2 },
    },
    operatorKey.seed,
    now,
  );
  const account = (
    key: { publicKey: string; seed: string },
    name: string,
    nats: Record<string, unknown>,
  ) => ({
    publicKey: key.publicKey,
    seed: key.seed,
    jwt: signNatsClaims({ sub: key.publicKey, name, nats }, operatorKey.seed, now),
  });
  const {
    service,
    stream,
    localChangesMappedTo,
    hostStream,
    localHostChangesMappedTo,
    latticeEvents,
    hostPing,
  } = accountLinks(options);
  const accounts = {
    [ARBITER_ACCOUNT]: account(
      arbiterKey,
      ARBITER_ACCOUNT,
      accountNatsClaims(true, {
        exports: [
          { name: "policy", subject: service, type: "service", response_type: "Singleton" },
          { name: "changes", subject: stream, type: "stream" },
          { name: "host-changes", subject: hostStream, type: "stream" },
        ],
        imports: [
          ...latticeEvents.map((subject) => ({
            name: subject,
            subject,
            account: latticeKey.publicKey,
            type: "stream",
          })),
          { name: "host-ping", subject: hostPing, account: latticeKey.publicKey, type: "service" },
        ],
      }),
    ),
    [LATTICE_ACCOUNT]: account(
      latticeKey,
      LATTICE_ACCOUNT,
      accountNatsClaims(false, {
        imports: [
          { name: "policy", subject: service, account: arbiterKey.publicKey, type: "service" },
          { name: "changes", subject: stream, account: arbiterKey.publicKey, type: "stream" },
          { name: "host-changes", subject: hostStream, account: arbiterKey.publicKey, type: "stream" },
          ...hostJetStreamLinks.services.map((subject) => ({
            name: subject,
            subject,
            account: latticeJsKey.publicKey,
            type: "service",
          })),
          {
            name: "deliveries",
            subject: hostJetStreamLinks.stream,
            account: latticeJsKey.publicKey,
            type: "stream",
          },
        ],
        exports: [
          ...latticeEvents.map((subject) => ({ name: subject, subject, type: "stream" })),
          {
            name: "host-ping",
            subject: hostPing,
            type: "service",
            response_type: "Stream",
            // nanoseconds, as the JWT carries a duration
            response_threshold: 5_000_000_000,
          },
        ],
        mappings: {
          [stream]: [{ subject: localChangesMappedTo, weight: 100 }],
          [hostStream]: [{ subject: localHostChangesMappedTo, weight: 100 }],
        },
      }),
    ),
    [LATTICE_JETSTREAM_ACCOUNT]: account(
      latticeJsKey,
      LATTICE_JETSTREAM_ACCOUNT,
      accountNatsClaims(true, {
        exports: [
          ...hostJetStreamLinks.services.map((subject) => ({ name: subject, subject, type: "service" })),
          { name: "deliveries", subject: hostJetStreamLinks.stream, type: "stream" },
        ],
      }),
    ),
  };
  const accountSeeds: Record<string, string> = {
    [ARBITER_ACCOUNT]: arbiterKey.seed,
    [LATTICE_ACCOUNT]: latticeKey.seed,
  };
  const permissions = rolePermissions(options);
  const users = {} as Record<NatsRole, NatsIdentity>;
  for (const role of NATS_ROLES) {
    const key = generateKey("U");
    const accountSeed = accountSeeds[ROLE_ACCOUNT[role]];
    if (accountSeed === undefined) throw new Error(`no account for role ${role}`);
    users[role] = {
      publicKey: key.publicKey,
      seed: key.seed,
      jwt: signNatsClaims(
        { sub: key.publicKey, name: role, nats: userNatsClaims(permissions[role]) },
        accountSeed,
        now,
      ),
    };
  }
  return {
    operator: { publicKey: operatorKey.publicKey, seed: operatorKey.seed, jwt: operatorJwt },
    systemAccount: account(systemKey, "SYS", accountNatsClaims(false)),
    accounts,
    users,
  };
}

/**
 * The operator-mode part of a server's configuration for `setup`: the operator JWT, the system
 * account and an in-memory resolver preloaded with the account JWTs. nats-server refuses password
 * users beside an operator, so this replaces the accounts include rather than joining it.
 */
export function renderOperatorConfig(setup: OperatorSetup): string {
  return [
    `operator: ${JSON.stringify(setup.operator.jwt)}`,
    `system_account: ${JSON.stringify(setup.systemAccount.publicKey)}`,
    // A user JWT carries its allow-lists and travels in the CONNECT line (4 KB by default).
    "max_control_line: 32768",
    "resolver: MEMORY",
    "resolver_preload: {",
    `  ${setup.systemAccount.publicKey}: ${JSON.stringify(setup.systemAccount.jwt)}`,
    ...Object.values(setup.accounts).map(
      (account) => `  ${account.publicKey}: ${JSON.stringify(account.jwt)}`,
    ),
    "}",
    "",
  ].join("\n");
}

/** A NATS `.creds` file (the format nsc writes and every NATS client reads) for a user identity. */
export function renderCredsFile(user: NatsIdentity): string {
  return [
    "-----BEGIN NATS USER JWT-----",
    user.jwt,
    "------END NATS USER JWT------",
    "",
    "************************* IMPORTANT *************************",
    "NKEY Seed printed below can be used to sign and prove identity.",
    "NKEYs are sensitive and should be treated as secrets.",
    "",
    "-----BEGIN USER NKEY SEED-----",
    user.seed,
    "------END USER NKEY SEED------",
    "",
    "*************************************************************",
    "",
  ].join("\n");
}
