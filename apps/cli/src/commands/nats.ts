import { chmodSync, existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import {
  createOperatorSetup,
  NATS_ROLES,
  type PermissionOptions,
  renderAccountsConfig,
  renderClusterNodeConfig,
  renderCredsFile,
  renderOperatorConfig,
  renderSingleNodeConfig,
} from "@arbiter/embedded-nats";
import { ArbiterError, DEFAULT_CHANGES_TOPIC, DEFAULT_POLICY_TOPIC, ErrorCode } from "@arbiter/protocol";
import { Command } from "commander";
import { z } from "zod";
import { emit } from "../output.js";

interface NatsConfigFlags {
  lattice?: string;
  policyTopic?: string;
  changesTopic?: string;
  prefix?: string;
  jwt?: boolean;
  json?: boolean;
}

/** A lattice name or topic as it goes into subjects: tokens of letters, digits, `-` and `_`, dot-separated. */
const SubjectPart = z
  .string()
  .regex(/^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/, "letters, digits, - and _ between dots");

/** The permission options from the flags; INVALID_CONFIG naming the flag for one that cannot be a subject. */
function permissionOptions(flags: NatsConfigFlags): PermissionOptions {
  const named: [string, string | undefined, keyof PermissionOptions][] = [
    ["--lattice", flags.lattice, "lattice"],
    ["--policy-topic", flags.policyTopic, "policyTopic"],
    ["--changes-topic", flags.changesTopic, "changesTopic"],
    ["--prefix", flags.prefix, "prefix"],
  ];
  const options: PermissionOptions = {};
  for (const [flag, value, key] of named) {
    if (value === undefined) continue;
    const parsed = SubjectPart.safeParse(value);
    if (!parsed.success) {
      throw new ArbiterError(
        ErrorCode.InvalidConfig,
        `${flag} ${JSON.stringify(value)}: not usable in NATS subjects (${parsed.error.issues[0]?.message})`,
      );
    }
    options[key] = parsed.data;
  }
  const policyTopic = options.policyTopic ?? DEFAULT_POLICY_TOPIC;
  const changesTopic = options.changesTopic ?? DEFAULT_CHANGES_TOPIC;
  if (policyTopic === changesTopic) {
    throw new ArbiterError(
      ErrorCode.InvalidConfig,
      `--changes-topic ${JSON.stringify(changesTopic)}: the same subject as --policy-topic; hosts would take overrides for requests and workers refuse it`,
    );
  }
  return options;
}

function writeSecret(path: string, text: string): void {
  writeFileSync(path, text, { mode: 0o600 });
  chmodSync(path, 0o600);
}

/**
 * `arbiter nats config DIR`: the shipped permissions for another lattice, topics or prefix, as
 * password users (accounts.conf beside single-node.conf and cluster-node.conf) or, with `--jwt`, as
 * the JWT users of operator mode with one `.creds` file per role (new keys; refuses a folder that
 * already holds some, so no deployment's keys are overwritten).
 */
export function natsCommand(): Command {
  const nats = new Command("nats").description("NATS server configuration with the shipped permissions");
  nats
    .command("config")
    .description(
      "write the NATS configuration with the shipped accounts and permissions for your lattice: password users, or with --jwt the JWT users real wasmCloud hosts need (operator mode, one .creds file per role)",
    )
    .argument("<dir>", "the folder to write into (created if missing)")
    .option("--lattice <name>", "the wasmCloud lattice hosts may use (WASMCLOUD_LATTICE)", "default")
    .option("--policy-topic <topic>", "wasmCloud's policy topic", "wasmcloud.policy")
    .option("--changes-topic <topic>", "wasmCloud's policy changes topic", "wasmcloud.policy.changes")
    .option("--prefix <prefix>", "Arbiter's stream/subject/bucket prefix", "arbiter")
    .option("--jwt", "operator mode: new operator, account and user keys; JWTs and .creds files (mode 0600)")
    .option("--json", "print {dir, files, credentials?} as JSON")
    .action((dir: string, flags: NatsConfigFlags) => {
      const options = permissionOptions(flags);
      const target = resolve(dir);
      const files: string[] = [];
      const credentials: Record<string, string> = {};
      const setupFile = join(target, "operator.json");
      // The password form writes single-node.conf and cluster-node.conf too: over an operator-mode
      // folder's, a server started from it would refuse every .creds file of that deployment.
      if (existsSync(setupFile)) {
        throw new ArbiterError(
          ErrorCode.InvalidConfig,
          `${setupFile} exists: that folder holds a deployment's keys already${flags.jwt === true ? "" : ", and its server files (the password form would replace them)"}; choose another folder (or remove it to start a new one)`,
        );
      }
      if (flags.jwt === true) {
        mkdirSync(target, { recursive: true, mode: 0o700 });
        const setup = createOperatorSetup(options);
        writeSecret(setupFile, `${JSON.stringify(setup, null, 2)}\n`);
        files.push(setupFile);
        writeFileSync(join(target, "operator.conf"), renderOperatorConfig(setup));
        files.push(join(target, "operator.conf"));
        for (const role of NATS_ROLES) {
          credentials[role] = join(target, `${role}.creds`);
          writeSecret(credentials[role], renderCredsFile(setup.users[role]));
          files.push(credentials[role]);
        }
        writeFileSync(
          join(target, "single-node.conf"),
          [
            "# One JetStream server for a lattice with Arbiter, its users as JWTs (written by `arbiter nats config --jwt`).",
            "# Run: nats-server -c single-node.conf -p 4222 -sd /var/lib/nats. Arbiter runs with --replicas 1.",
            "jetstream: enabled",
            'include "./operator.conf"',
            "",
          ].join("\n"),
        );
        writeFileSync(join(target, "cluster-node.conf"), renderClusterNodeConfig("./operator.conf"));
      } else {
        mkdirSync(target, { recursive: true });
        writeFileSync(join(target, "accounts.conf"), renderAccountsConfig(options));
        files.push(join(target, "accounts.conf"));
        writeFileSync(join(target, "single-node.conf"), renderSingleNodeConfig());
        writeFileSync(join(target, "cluster-node.conf"), renderClusterNodeConfig());
      }
      files.push(join(target, "single-node.conf"), join(target, "cluster-node.conf"));
      const jwt = flags.jwt === true;
      emit(flags.json === true, { dir: target, files, ...(jwt ? { credentials } : {}) }, () =>
        [
          `wrote ${files.map((f) => f.slice(target.length + 1)).join(", ")} in ${target}`,
          `  nats-server -c ${join(target, "single-node.conf")} -p 4222 -sd /var/lib/nats${jwt ? "" : "   (with ARBITER_WORKER_PASSWORD, ARBITER_ADMIN_PASSWORD, WASMCLOUD_HOST_PASSWORD set)"}`,
          ...(jwt
            ? [
                `  admins:  NATS_CREDS=${credentials["admin"]}`,
                `  workers: NATS_CREDS=${credentials["worker"]}`,
                `  hosts:   WASMCLOUD_NATS_CREDS=${credentials["host"]}`,
                "  operator.json holds every seed: keep it secret, and off the NATS machines",
              ]
            : ["  admins: NATS_USER=arbiter-admin, workers: arbiter-worker, hosts: wasmcloud-host"]),
        ].join("\n"),
      );
    });
  return nats;
}
