import {
  ADMIN_INBOX_PREFIX,
  ArbiterError,
  DEFAULT_CHANGES_TOPIC,
  DEFAULT_POLICY_TOPIC,
  DEFAULT_PREFIX,
  ErrorCode,
  type ResourceNames,
  resourceNames,
  WORKER_INBOX_PREFIX,
} from "@arbiter/protocol";

export { ADMIN_INBOX_PREFIX, WORKER_INBOX_PREFIX };

/** The three kinds of NATS credential in a lattice with Arbiter. */
export type NatsRole = "host" | "worker" | "admin";

/** Every role, in the order the generated files list them. */
export const NATS_ROLES: readonly NatsRole[] = ["worker", "admin", "host"];

/** What one credential may publish and subscribe to: allow-lists, with denials that win over them. */
export interface RolePermissions {
  readonly publish: { readonly allow: readonly string[]; readonly deny: readonly string[] };
  readonly subscribe: { readonly allow: readonly string[]; readonly deny: readonly string[] };
  /**
   * True when the credential may also publish to the reply subject of a message it received, once,
   * within two minutes (nats-server's `allow_responses` defaults): how hosts and workers answer
   * requests without being allowed to publish into anyone's inbox.
   */
  readonly allowResponses: boolean;
}

/** The names the permissions are written for; every field has the wasmCloud or Arbiter default. */
export interface PermissionOptions {
  /** The wasmCloud lattice (`WASMCLOUD_LATTICE`); default `default`. */
  lattice?: string;
  /** wasmCloud's policy topic; default `wasmcloud.policy`. */
  policyTopic?: string;
  /** wasmCloud's policy changes topic; default `wasmcloud.policy.changes`. */
  changesTopic?: string;
  /** Arbiter's resource prefix; default `arbiter`. */
  prefix?: string;
}

/** The inbox prefix wasmCloud hosts use (async-nats' default; the host has no setting for it). */
export const HOST_INBOX_PREFIX = "_INBOX";

/** The JetStream KV buckets a wasmCloud 1.x host opens for `lattice` (host crate `wasmbus/mod.rs`). */
export function latticeBuckets(lattice: string): readonly string[] {
  return [`LATTICEDATA_${lattice}`, `CONFIGDATA_${lattice}`];
}

/** The streams behind `latticeBuckets(lattice)`. */
export function latticeBucketStreams(lattice: string): readonly string[] {
  return latticeBuckets(lattice).map((bucket) => `KV_${bucket}`);
}

/**
 * Arbiter's streams and buckets, read off {@link ResourceNames} (every `…Stream` and `…Bucket`), so
 * that a stream or bucket added there is in the permissions too (and the shipped files, which a
 * unit test compares, are regenerated).
 */
function arbiterResources(names: ResourceNames): { streams: readonly string[]; buckets: readonly string[] } {
  const entries = Object.entries(names) as [string, string][];
  const buckets = entries.filter(([key]) => key.endsWith("Bucket")).map(([, value]) => value);
  const streams = entries.filter(([key]) => key.endsWith("Stream")).map(([, value]) => value);
  return { streams: [...streams, ...buckets.map((bucket) => `KV_${bucket}`)], buckets };
}

/** The JetStream API calls that read one stream by its name: stream info and message gets. */
function streamReads(stream: string): string[] {
  return [
    `$JS.API.STREAM.INFO.${stream}`,
    `$JS.API.STREAM.MSG.GET.${stream}`,
    `$JS.API.DIRECT.GET.${stream}`,
    `$JS.API.DIRECT.GET.${stream}.>`,
  ];
}

/**
 * The JetStream API calls that read and follow one stream by its name: {@link streamReads} and
 * ephemeral consumers. Durable consumers (`DURABLE.CREATE`, the six-token form a deny-list misses)
 * and listing the stream's consumers only where `durable` says so. Whoever may create a consumer
 * on a stream may have it deliver the stream's messages onto any subject of the stream's account
 * (nats-server does not check a deliver subject), so a role gets consumers only on streams whose
 * messages it cannot write.
 */
function streamUse(stream: string, { durable }: { durable: boolean }): string[] {
  const subjects = [
    ...streamReads(stream),
    `$JS.API.CONSUMER.CREATE.${stream}`,
    `$JS.API.CONSUMER.CREATE.${stream}.>`,
    `$JS.API.CONSUMER.INFO.${stream}.>`,
    `$JS.API.CONSUMER.DELETE.${stream}.>`,
    `$JS.API.CONSUMER.MSG.NEXT.${stream}.>`,
    `$JS.ACK.${stream}.>`,
    `$JS.FC.${stream}.>`,
  ];
  if (durable)
    subjects.push(
      `$JS.API.CONSUMER.DURABLE.CREATE.${stream}.>`,
      `$JS.API.CONSUMER.LIST.${stream}`,
      `$JS.API.CONSUMER.NAMES.${stream}`,
    );
  return subjects;
}

/** The JetStream API calls that use one existing pull consumer: its info, pulls and acks. */
function consumerBinding(stream: string, consumer: string): string[] {
  return [
    `$JS.API.CONSUMER.INFO.${stream}.${consumer}`,
    `$JS.API.CONSUMER.MSG.NEXT.${stream}.${consumer}`,
    `$JS.ACK.${stream}.${consumer}.>`,
  ];
}

/**
 * The allow-lists of the three roles for one lattice and one Arbiter deployment. Workers and admins
 * are in the {@link ARBITER_ACCOUNT} with Arbiter's streams; hosts in the {@link LATTICE_ACCOUNT},
 * which imports the policy service and the changes topic from it (see {@link accountLinks}) and its
 * buckets' JetStream from the {@link LATTICE_JETSTREAM_ACCOUNT} (see {@link hostJetStreamLinks}).
 * - host: exactly what a wasmCloud 1.x host uses (control interface, events and wRPC of its lattice,
 *   its two lattice buckets), asking on the policy topic and hearing the changes topic; inboxes
 *   only as answers.
 * - worker: answering on the policy topic and the status subject (as answers only), overrides on the
 *   changes topic, decisions, revocations and the active index, reading Arbiter's streams, following
 *   the rules stream (its only consumers), binding to the fan-out's consumers on the decisions
 *   and the expiry timers, arming those timers; and on the split re-evaluation's parts (which it
 *   publishes and marks done); the active bucket's writes as the server republishes them (for its
 *   mirror of the index); its own inbox.
 * - admin: rule events and the snapshot, creating Arbiter's streams, reading everything of
 *   Arbiter's, asking workers for their status; its own inbox.
 * Nobody may list streams, delete, purge or update a stream, or create one not named here; only
 * admins create Arbiter's.
 */
export function rolePermissions(options: PermissionOptions = {}): Record<NatsRole, RolePermissions> {
  const lattice = checkedLattice(options.lattice ?? "default");
  const { policyTopic, changesTopic } = topics(options);
  // Each host's own subject for per-host overrides (`arbiter worker --changes-per-host`), and
  // everything under the changes topic, which no one but a worker may publish on.
  const hostChanges = perHostChangesSubjects(changesTopic);
  const underChanges = `${changesTopic}.>`;
  const names = resourceNames(options.prefix ?? DEFAULT_PREFIX);
  // The host crate's subjects: control interface, events, provider RPC (link definitions, health,
  // shutdown), the config service, and wRPC (`<lattice>.<component>.wrpc…`).
  const latticeSubjects = [
    `wasmbus.ctl.v1.${lattice}.>`,
    `wasmbus.evt.${lattice}.>`,
    `wasmbus.rpc.${lattice}.>`,
    `wasmbus.cfg.${lattice}.>`,
    `${lattice}.>`,
  ];
  const bucketStreams = latticeBucketStreams(lattice);
  const { streams, buckets } = arbiterResources(names);
  // Workers write every bucket but the rules snapshot. They create no stream: whoever creates one
  // first chooses its configuration, and a worker's credential made the replay bucket, before
  // any worker had, with a republish of its puts onto the rules subject. The admin creates them all.
  const workerBuckets = buckets.filter((bucket) => bucket !== names.rulesBucket);
  const created = (list: readonly string[]) => list.map((stream) => `$JS.API.STREAM.CREATE.${stream}`);
  const host: RolePermissions = {
    publish: {
      allow: [
        policyTopic,
        ...latticeSubjects,
        "$JS.API.INFO",
        ...bucketStreams.flatMap((stream) => streamUse(stream, { durable: false })),
        ...created(bucketStreams),
        ...latticeBuckets(lattice).map((bucket) => `$KV.${bucket}.>`),
      ],
      // Whatever the lattice is called (`wasmcloud`), its wildcards never reach these.
      deny: [changesTopic, underChanges],
    },
    subscribe: {
      allow: [changesTopic, hostChanges, ...latticeSubjects, `${HOST_INBOX_PREFIX}.>`],
      deny: [policyTopic],
    },
    allowResponses: true,
  };
  const links = accountLinks(options);
  const worker: RolePermissions = {
    publish: {
      allow: [
        changesTopic,
        hostChanges,
        // Asking the lattice whether a host reported stopped still answers (host lifecycle).
        links.hostPing,
        names.decisionsSubjects,
        names.revocationsSubjects,
        names.expiriesSubjects,
        ...workerBuckets.map((bucket) => `$KV.${bucket}.>`),
        "$JS.API.INFO",
        // Consumers only on the rules stream, which delivers nothing but admin-signed events and
        // never onto itself ("forms a cycle"): one on a stream the worker writes delivered what it
        // wrote, a copied signed rule event, into ARBITER_RULES.
        ...streamUse(names.rulesStream, { durable: false }),
        ...streams.filter((stream) => stream !== names.rulesStream).flatMap(streamReads),
        // The revocation fan-out's pull consumer on the decisions, made by the admin: workers bind
        // to it (info, pull, ack) and cannot create, change or delete it.
        ...consumerBinding(names.decisionsStream, names.activeIndexConsumer),
        // Expiry timers: workers arm them and hold them through the admin's consumer.
        ...consumerBinding(names.expiriesStream, names.expiriesConsumer),
        // The split re-evaluation: workers publish parts and mark them done, and share the
        // admin's pull consumer of the parts.
        names.scansSubjects,
        ...consumerBinding(names.scansStream, names.scanPartsConsumer),
      ],
      deny: [names.rulesSubject, `$KV.${names.rulesBucket}.>`],
    },
    subscribe: {
      allow: [
        policyTopic,
        names.statusSubject,
        `${WORKER_INBOX_PREFIX}.>`,
        ...links.latticeEvents,
        // The active bucket's writes, republished by the server for the workers' mirrors: no role
        // may publish there (nats-server republishes past permissions).
        names.activeRepublishSubjects,
      ],
      deny: [],
    },
    allowResponses: true,
  };
  const admin: RolePermissions = {
    publish: {
      allow: [
        names.rulesSubject,
        `$KV.${names.rulesBucket}.>`,
        names.statusSubject,
        "$JS.API.INFO",
        ...streams.flatMap((stream) => streamUse(stream, { durable: true })),
        ...created(streams),
      ],
      deny: [changesTopic, underChanges, policyTopic],
    },
    subscribe: { allow: [`${ADMIN_INBOX_PREFIX}.>`], deny: [] },
    allowResponses: false,
  };
  return { host, worker, admin };
}

/** One subject token of letters, digits, `-` and `_`, not starting with `_` or `-`. */
const LATTICE_NAME = /^[A-Za-z0-9][A-Za-z0-9_-]*$/;

/**
 * The lattice name, when hosts' `<lattice>.>` reaches only that lattice's own subjects. Throws
 * ArbiterError (INVALID_CONFIG) for a name with dots, wildcards or spaces, one starting with `_` or
 * `$` (`_INBOX.>` would let a host publish into every inbox, `$JS.>` reach the whole JetStream API),
 * and `wasmbus` (whose `wasmbus.>` is every lattice's control interface, events and RPC).
 */
function checkedLattice(lattice: string): string {
  if (!LATTICE_NAME.test(lattice) || lattice === "wasmbus") {
    throw new ArbiterError(
      ErrorCode.InvalidConfig,
      `lattice ${JSON.stringify(lattice)}: a lattice name for these permissions is one subject token of letters, digits, "-" and "_", not starting with "_" or "-", and not "wasmbus" (hosts may use "<lattice>.>")`,
    );
  }
  return lattice;
}

/**
 * The subjects of per-host overrides under `changesTopic`: one token more, the host's key
 * (`<changesTopic>.<host key>`), which is what a host started with that `--policy-changes-topic`
 * subscribes to.
 */
export function perHostChangesSubjects(changesTopic: string): string {
  return `${changesTopic}.*`;
}

function topics(options: PermissionOptions): { policyTopic: string; changesTopic: string } {
  return {
    policyTopic: options.policyTopic ?? DEFAULT_POLICY_TOPIC,
    changesTopic: options.changesTopic ?? DEFAULT_CHANGES_TOPIC,
  };
}

/** The account of Arbiter's workers and admins, and of its streams and buckets. */
export const ARBITER_ACCOUNT = "ARBITER";
/** The account of the wasmCloud hosts; it has no JetStream of its own. */
export const LATTICE_ACCOUNT = "LATTICE";
/**
 * The account that holds the hosts' lattice buckets, with no users: hosts reach its JetStream
 * through imports, and only its deliveries on inboxes come back (see {@link hostJetStreamLinks}).
 */
export const LATTICE_JETSTREAM_ACCOUNT = "LATTICE_JS";

/**
 * What the {@link LATTICE_JETSTREAM_ACCOUNT} exports and the {@link LATTICE_ACCOUNT} imports: the
 * JetStream API, KV puts, flow control and acks as services, and deliveries on inboxes as a stream.
 * A push consumer a host creates on its own bucket delivers inside that account, so whatever
 * deliver subject it names (the changes topic, Arbiter's subjects) reaches no host unless it is an
 * inbox: nats-server does not check a deliver subject against its creator's permissions.
 */
export const hostJetStreamLinks: { readonly services: readonly string[]; readonly stream: string } = {
  services: ["$JS.API.>", "$KV.>", "$JS.FC.>", "$JS.ACK.>"],
  stream: `${HOST_INBOX_PREFIX}.>`,
};
/** The account each role's users are in. */
export const ROLE_ACCOUNT: Readonly<Record<NatsRole, string>> = {
  worker: ARBITER_ACCOUNT,
  admin: ARBITER_ACCOUNT,
  host: LATTICE_ACCOUNT,
};

/**
 * The reply subjects a worker sees for hosts' requests: nats-server replaces the requester's reply
 * subject with one of these when a request crosses a service import (`arbiter worker
 * --inbox-prefix`'s default). The worker cannot see the host's own reply subject (README, "Threat model").
 */
export const SERVICE_IMPORT_REPLY_PREFIX = "_R_.";

/**
 * What a worker under these permissions answers (`arbiter worker --inbox-prefix
 * _R_.,_INBOX_arbiter_admin.`): hosts' requests through the service import, and admins' status
 * requests. Nothing else reaches a worker's subscriptions.
 */
export const WORKER_REPLY_PREFIXES: readonly string[] = [
  SERVICE_IMPORT_REPLY_PREFIX,
  `${ADMIN_INBOX_PREFIX}.`,
];

/**
 * What crosses between Arbiter and the lattice: the {@link ARBITER_ACCOUNT} exports the policy topic as a
 * service and the changes topic as a stream; the {@link LATTICE_ACCOUNT} imports both, and maps its
 * own publishes on the changes topic away. The other way, the lattice exports its hosts' lifecycle
 * events (`latticeEvents`, streams: 1.x subjects and the 0.82 one) and the host ping (`hostPing`, a
 * service answered by every host, so its responses are a stream, accepted for
 * `hostPingResponseThreshold` only), which Arbiter imports for its workers.
 */
export function accountLinks(options: PermissionOptions = {}): {
  readonly service: string;
  readonly stream: string;
  readonly localChangesMappedTo: string;
  readonly hostStream: string;
  readonly localHostChangesMappedTo: string;
  readonly latticeEvents: readonly string[];
  readonly hostPing: string;
  readonly hostPingResponseThreshold: string;
} {
  const { policyTopic, changesTopic } = topics(options);
  const lattice = checkedLattice(options.lattice ?? "default");
  return {
    service: policyTopic,
    stream: changesTopic,
    localChangesMappedTo: `${DROPPED_PREFIX}.${changesTopic}`,
    hostStream: perHostChangesSubjects(changesTopic),
    localHostChangesMappedTo: `${DROPPED_PREFIX}.${changesTopic}.{{wildcard(1)}}`,
    latticeEvents: [
      ...["host_started", "host_heartbeat", "host_stopped"].map((name) => `wasmbus.evt.${lattice}.${name}`),
      `wasmbus.evt.${lattice}`,
    ],
    hostPing: `wasmbus.ctl.v1.${lattice}.host.ping`,
    hostPingResponseThreshold: "5s",
  };
}

/**
 * Where the lattice account maps whatever is published on the changes topic inside it (nobody
 * subscribes there): an answer that a host steers onto the changes topic, by giving it as its
 * request's reply subject, then reaches no host. Overrides come only through the import.
 */
const DROPPED_PREFIX = "_ARBITER_DROPPED";

/** The password user of each role and the environment variable its password comes from. */
export const PASSWORD_USERS: Readonly<Record<NatsRole, { user: string; passwordVariable: string }>> = {
  worker: { user: "arbiter-worker", passwordVariable: "ARBITER_WORKER_PASSWORD" },
  admin: { user: "arbiter-admin", passwordVariable: "ARBITER_ADMIN_PASSWORD" },
  host: { user: "wasmcloud-host", passwordVariable: "WASMCLOUD_HOST_PASSWORD" },
};

const ROLE_COMMENTS: Record<NatsRole, string> = {
  worker: "Decision workers (`arbiter worker`, NATS_USER=arbiter-worker).",
  admin:
    "Rule administrators (`arbiter rules …`, NATS_USER=arbiter-admin); events are also signed with ARBITER_ADMIN_SEED.",
  host: "wasmCloud hosts: ask on the policy topic, hear overrides, run the lattice; nothing of Arbiter's.",
};

/**
 * The shared include (`accounts.conf`): the three accounts, their imports and exports, the three
 * password users with their allow-lists, passwords read from the server's environment.
 * Deterministic for the same options.
 */
export function renderAccountsConfig(options: PermissionOptions = {}): string {
  const permissions = rolePermissions(options);
  const links = accountLinks(options);
  const q = (value: string) => JSON.stringify(value);
  const list = (values: readonly string[], indent: string) =>
    values.length === 0 ? "[]" : `[\n${values.map((v) => `${indent}  ${q(v)}`).join("\n")}\n${indent}]`;
  const block = (name: string, p: { allow: readonly string[]; deny: readonly string[] }) => [
    `          ${name}: {`,
    `            allow: ${list(p.allow, "            ")}`,
    `            deny: ${list(p.deny, "            ")}`,
    "          }",
  ];
  const users = (account: string) => {
    const lines: string[] = [];
    for (const role of NATS_ROLES.filter((r) => ROLE_ACCOUNT[r] === account)) {
      const p = permissions[role];
      const { user, passwordVariable } = PASSWORD_USERS[role];
      lines.push(
        `      # ${ROLE_COMMENTS[role]}`,
        "      {",
        `        user: ${q(user)}`,
        `        password: $${passwordVariable}`,
        "        permissions: {",
        ...block("publish", p.publish),
        ...block("subscribe", p.subscribe),
      );
      if (p.allowResponses) lines.push("          allow_responses: true");
      lines.push("        }", "      }");
    }
    return lines;
  };
  return [
    "# Generated by @arbiter/embedded-nats (permissions.ts) for lattice",
    `# ${q(options.lattice ?? "default")}: edit the module, not this file (a unit test compares them).`,
    '# Allow-lists: each credential may use exactly what its role needs; see README "Threat model".',
    "accounts {",
    "  # Arbiter: its workers, its admins, its streams and buckets. Hosts reach only the policy",
    "  # service and hear only the changes topic.",
    `  ${ARBITER_ACCOUNT} {`,
    "    jetstream: enabled",
    "    users: [",
    ...users(ARBITER_ACCOUNT),
    "    ]",
    "    exports: [",
    `      { service: ${q(links.service)} }`,
    `      { stream: ${q(links.stream)} }`,
    `      { stream: ${q(links.hostStream)} }`,
    "    ]",
    "    # The lattice's host lifecycle events and host ping, for pruning stopped hosts.",
    "    imports: [",
    ...links.latticeEvents.map(
      (subject) => `      { stream: { account: ${LATTICE_ACCOUNT}, subject: ${q(subject)} } }`,
    ),
    `      { service: { account: ${LATTICE_ACCOUNT}, subject: ${q(links.hostPing)} } }`,
    "    ]",
    "  }",
    "  # The wasmCloud lattice: its hosts, with JetStream only through imports.",
    `  ${LATTICE_ACCOUNT} {`,
    "    # Overrides come only from Arbiter, not from inside the lattice (an answer steered there).",
    "    mappings: {",
    `      ${q(links.stream)}: ${q(links.localChangesMappedTo)}`,
    `      ${q(links.hostStream)}: ${q(links.localHostChangesMappedTo)}`,
    "    }",
    "    users: [",
    ...users(LATTICE_ACCOUNT),
    "    ]",
    "    imports: [",
    `      { service: { account: ${ARBITER_ACCOUNT}, subject: ${q(links.service)} } }`,
    `      { stream: { account: ${ARBITER_ACCOUNT}, subject: ${q(links.stream)} } }`,
    `      { stream: { account: ${ARBITER_ACCOUNT}, subject: ${q(links.hostStream)} } }`,
    ...hostJetStreamLinks.services.map(
      (subject) => `      { service: { account: ${LATTICE_JETSTREAM_ACCOUNT}, subject: ${q(subject)} } }`,
    ),
    `      { stream: { account: ${LATTICE_JETSTREAM_ACCOUNT}, subject: ${q(hostJetStreamLinks.stream)} } }`,
    "    ]",
    "    exports: [",
    ...links.latticeEvents.map((subject) => `      { stream: ${q(subject)} }`),
    `      { service: ${q(links.hostPing)}, response_type: stream, response_threshold: ${q(links.hostPingResponseThreshold)} }`,
    "    ]",
    "  }",
    "  # The hosts' lattice buckets. No users: what a host's consumer delivers here reaches no one",
    "  # but an inbox.",
    `  ${LATTICE_JETSTREAM_ACCOUNT} {`,
    "    jetstream: enabled",
    "    exports: [",
    ...hostJetStreamLinks.services.map((subject) => `      { service: ${q(subject)} }`),
    `      { stream: ${q(hostJetStreamLinks.stream)} }`,
    "    ]",
    "  }",
    "}",
    "",
  ].join("\n");
}

/**
 * `single-node.conf`: one JetStream server with the shared include. It sets no port and no
 * `store_dir`, so `nats-server -c single-node.conf -p PORT -sd DIR` chooses both.
 */
export function renderSingleNodeConfig(includePath = "./accounts.conf"): string {
  return [
    "# One JetStream server for a lattice with Arbiter (generated by @arbiter/embedded-nats).",
    "# Run: nats-server -c single-node.conf -p 4222 -sd /var/lib/nats, with ARBITER_WORKER_PASSWORD,",
    "# ARBITER_ADMIN_PASSWORD and WASMCLOUD_HOST_PASSWORD in its environment. Arbiter runs with --replicas 1.",
    "jetstream: enabled",
    `include ${JSON.stringify(includePath)}`,
    "",
  ].join("\n");
}

/** `cluster-node.conf`: one node of three (NODE_NAME and the routes per node), with the shared include. */
export function renderClusterNodeConfig(includePath = "./accounts.conf"): string {
  return [
    "# One node of a three-node JetStream cluster for a lattice with Arbiter (generated by",
    "# @arbiter/embedded-nats; run three, n1 to n3, with NODE_NAME, the routes and store_dir set for",
    "# each). Arbiter then runs with --replicas 3.",
    "server_name: $NODE_NAME",
    "listen: 0.0.0.0:4222",
    "http: 0.0.0.0:8222",
    "",
    "jetstream {",
    "  store_dir: /var/lib/nats/jetstream",
    "}",
    "",
    "cluster {",
    "  name: arbiter",
    "  listen: 0.0.0.0:6222",
    "  routes: [",
    "    nats-route://nats-1:6222",
    "    nats-route://nats-2:6222",
    "    nats-route://nats-3:6222",
    "  ]",
    "}",
    "",
    `include ${JSON.stringify(includePath)}`,
    "",
  ].join("\n");
}
