import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  createOperatorSetup,
  NATS_ROLES,
  type NatsRole,
  type OperatorSetup,
  renderCredsFile,
  renderOperatorConfig,
} from "@arbiter/embedded-nats";
import { ArbiterError, ErrorCode } from "@arbiter/protocol";
import { z } from "zod";

const Identity = z.object({ publicKey: z.string(), seed: z.string(), jwt: z.string() });
const StoredSetup = z.object({
  operator: Identity,
  systemAccount: Identity,
  accounts: z.object({ ARBITER: Identity, LATTICE: Identity, LATTICE_JS: Identity }),
  users: z.object({ host: Identity, worker: Identity, admin: Identity }),
});

/** The NATS side of `arbiter up --secure`: the operator-mode configuration and one `.creds` file per role. */
export interface SecureNats {
  /** Server configuration to append (operator, accounts, resolver). */
  readonly config: string;
  /** Path of each role's `.creds` file (mode 0600). */
  readonly credsFiles: Readonly<Record<NatsRole, string>>;
  /** The keys and JWTs (the host's JWT and seed are what a wasmCloud host presents). */
  readonly setup: OperatorSetup;
}

/**
 * Loads the operator setup kept in `home/secure/` or creates it the first time (the accounts must
 * stay the same across restarts: JetStream keeps each account's streams under its public key), and
 * writes the `.creds` files. Every file is mode 0600. Throws INVALID_CONFIG for an unreadable setup.
 */
export function prepareSecureNats(home: string): SecureNats {
  const dir = join(home, "secure");
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const file = join(dir, "operator.json");
  let setup: OperatorSetup;
  if (existsSync(file)) {
    const parsed = StoredSetup.safeParse(parseJson(readFileSync(file, "utf8")));
    if (!parsed.success) {
      throw new ArbiterError(
        ErrorCode.InvalidConfig,
        `${file}: not an operator setup written by arbiter up --secure (${parsed.error.issues[0]?.message}); remove ${dir} to start afresh`,
      );
    }
    setup = parsed.data;
  } else {
    setup = createOperatorSetup({ lattice: "default" });
    writeSecret(file, `${JSON.stringify(setup, null, 2)}\n`);
  }
  const credsFiles = {} as Record<NatsRole, string>;
  for (const role of NATS_ROLES) {
    credsFiles[role] = join(dir, `${role}.creds`);
    writeSecret(credsFiles[role], renderCredsFile(setup.users[role]));
  }
  return { config: renderOperatorConfig(setup), credsFiles, setup };
}

function writeSecret(path: string, text: string): void {
  writeFileSync(path, text, { mode: 0o600 });
  // An existing file keeps its mode through writeFileSync: make sure of it.
  chmodSync(path, 0o600);
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
