import { ArbiterError, ErrorCode } from "@arbiter/protocol";
import {
  decodePublicKey,
  generateKey,
  type KeyRole,
  parseInvocation,
  verifyInvocation,
} from "@arbiter/trust";
import { Command } from "commander";
import { InputTooLargeError, readBounded } from "../bounded-read.js";
import { emit } from "../output.js";
import { addComponentCommands } from "./trust-components.js";

const ROLES: Record<string, { role: KeyRole; env: string; publicEnv?: string; use: string }> = {
  cluster: {
    role: "C",
    env: "WASMCLOUD_CLUSTER_SEED",
    publicEnv: "WASMCLOUD_CLUSTER_ISSUERS",
    use: "signs zero-trust invocations and signed policy requests (public key goes in WASMCLOUD_CLUSTER_ISSUERS)",
  },
  admin: {
    role: "O",
    env: "ARBITER_ADMIN_SEED",
    use: "signs rule events (public key goes in ARBITER_ADMIN_KEYS)",
  },
  host: { role: "N", env: "", use: "identifies a wasmCloud host" },
  worker: {
    role: "N",
    env: "ARBITER_WORKER_SEED",
    use: "signs an Arbiter worker's decisions (enroll the public key: arbiter workers enroll KEY)",
  },
  account: {
    role: "A",
    env: "ARBITER_ISSUER_SEED",
    use: "issues component claims (trust sign-component; rules match claims.issuer)",
  },
};

/** `arbiter trust keygen cluster|admin|host|worker|account`, `trust verify-invocation`, `trust inspect`, `trust sign-component`. */
export function trustCommand(): Command {
  const trust = new Command("trust").description("keys and signatures");
  trust
    .command("keygen")
    .description("generate an nkey: cluster (C…), admin (O…), host (N…), worker (N…) or account (A…)")
    .argument("<kind>", "cluster | admin | host | worker | account")
    .option("--json", "print {kind, publicKey, seed} as JSON (cluster keys also {env})")
    .action((kind: string, flags: { json?: boolean }) => {
      const spec = ROLES[kind];
      if (!spec)
        throw new ArbiterError(
          ErrorCode.InvalidConfig,
          `unknown key kind ${JSON.stringify(kind)}: expected ${Object.keys(ROLES).join(", ")}`,
        );
      const key = generateKey(spec.role);
      const env =
        spec.publicEnv !== undefined ? { [spec.env]: key.seed, [spec.publicEnv]: key.publicKey } : undefined;
      emit(
        flags.json === true,
        { kind, publicKey: key.publicKey, seed: key.seed, ...(env ? { env } : {}) },
        () =>
          [
            `# ${kind} key: ${spec.use}`,
            `public: ${key.publicKey}`,
            `seed:   ${key.seed}   (keep secret${spec.env ? `; ${spec.env}` : ""})`,
            ...(env
              ? ["# as a wasmCloud host takes them:", ...Object.entries(env).map(([k, v]) => `${k}=${v}`)]
              : []),
          ].join("\n"),
      );
    });
  trust
    .command("verify-invocation")
    .description(
      "verify a zero-trust invocation (JSON with msg in base64, or msgpack bytes) as a wasmCloud host does; exit 1 when invalid",
    )
    .argument(
      "<file>",
      "the invocation file, or - for standard input: {origin, target: {public_key, link_name, contract_id}, operation, msg (base64), id, encoded_claims (the JWT), host_id (N…)}",
    )
    .option("--issuers <keys>", "valid cluster issuers (C…), comma-separated (env WASMCLOUD_CLUSTER_ISSUERS)")
    .option("--json", 'print {"valid", "reasons": [{code, message}]} as JSON')
    .action(async (file: string, flags: { issuers?: string; json?: boolean }) => {
      const issuers = clusterIssuers(flags.issuers);
      const bytes = await readInvocationBytes(file);
      const parsed = parseInvocation(bytes);
      if (!parsed.ok) {
        throw new ArbiterError(
          ErrorCode.InvalidInvocation,
          `${file === "-" ? "standard input" : file}: ${parsed.reason}`,
        );
      }
      const result = verifyInvocation(parsed.invocation, { issuers, now: new Date() });
      const out = { valid: result.valid, reasons: result.reasons };
      emit(flags.json === true, out, () =>
        result.valid
          ? `valid: signed by cluster issuer ${result.claims?.iss} (${parsed.format} invocation ${parsed.invocation.operation})`
          : ["invalid:", ...result.reasons.map((r) => `  ${r.code}: ${r.message}`)].join("\n"),
      );
      if (!result.valid) process.exitCode = 1;
    });
  addComponentCommands(trust);
  return trust;
}

/** `--issuers`, else WASMCLOUD_CLUSTER_ISSUERS; INVALID_CONFIG when neither names a key or one is not a cluster key. */
function clusterIssuers(flag: string | undefined): string[] {
  const fromEnv = process.env["WASMCLOUD_CLUSTER_ISSUERS"];
  const [raw, source] =
    flag !== undefined ? [flag, "--issuers"] : [fromEnv ?? "", "WASMCLOUD_CLUSTER_ISSUERS"];
  const keys = raw
    .split(",")
    .map((k) => k.trim())
    .filter((k) => k.length > 0);
  if (keys.length === 0) {
    throw new ArbiterError(
      ErrorCode.InvalidConfig,
      `no cluster issuers: pass --issuers C…[,C…] or set WASMCLOUD_CLUSTER_ISSUERS (${flag === undefined && fromEnv === undefined ? "it is not set" : `${source} names no key`}); without them no invocation can be valid`,
    );
  }
  for (const key of keys) {
    try {
      decodePublicKey(key, "C");
    } catch (err) {
      throw new ArbiterError(
        ErrorCode.InvalidConfig,
        `${source}: ${JSON.stringify(key)} is not a cluster public key: ${(err as Error).message}`,
        { cause: err },
      );
    }
  }
  return keys;
}

/** The most an invocation file is read: the largest max_payload a NATS server accepts. */
const MAX_INVOCATION_BYTES = 64 * 1024 * 1024;

async function readInvocationBytes(file: string): Promise<Buffer> {
  try {
    return await readBounded(file, MAX_INVOCATION_BYTES);
  } catch (err) {
    if (err instanceof InputTooLargeError) {
      throw new ArbiterError(ErrorCode.InvalidInvocation, err.message, { cause: err });
    }
    throw new ArbiterError(ErrorCode.InvalidInvocation, `cannot read ${file}: ${(err as Error).message}`, {
      cause: err,
    });
  }
}
