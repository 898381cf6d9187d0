import { ArbiterError, ErrorCode } from "@arbiter/protocol";
import { generateKey, type KeyRole } from "@arbiter/trust";
import { Command } from "commander";
import { emit } from "../output.js";
import { addComponentCommands } from "./trust-components.js";

const ROLES: Record<string, { role: KeyRole; env: string; use: string }> = {
  cluster: {
    role: "C",
    env: "WASMCLOUD_CLUSTER_SEED",
    use: "signs zero-trust invocations (public key goes in WASMCLOUD_CLUSTER_ISSUERS)",
  },
  admin: {
    role: "O",
    env: "ARBITER_ADMIN_SEED",
    use: "signs rule events (public key goes in ARBITER_ADMIN_KEYS)",
  },
  host: { role: "N", env: "", use: "identifies a host or an Arbiter worker (ARBITER_WORKER_SEED)" },
  account: {
    role: "A",
    env: "ARBITER_ISSUER_SEED",
    use: "issues component claims (trust sign-component; rules match claims.issuer)",
  },
};

/** `arbiter trust keygen cluster|admin|host|account`, `trust inspect`, `trust sign-component`. */
export function trustCommand(): Command {
  const trust = new Command("trust").description("keys and signatures");
  trust
    .command("keygen")
    .description("generate an nkey: cluster (C…), admin (O…), host (N…) or account (A…)")
    .argument("<kind>", "cluster | admin | host | account")
    .option("--json", "print {kind, publicKey, seed} as JSON")
    .action((kind: string, flags: { json?: boolean }) => {
      const spec = ROLES[kind];
      if (!spec)
        throw new ArbiterError(
          ErrorCode.InvalidConfig,
          `unknown key kind ${JSON.stringify(kind)}: expected ${Object.keys(ROLES).join(", ")}`,
        );
      const key = generateKey(spec.role);
      emit(flags.json === true, { kind, publicKey: key.publicKey, seed: key.seed }, () =>
        [
          `# ${kind} key: ${spec.use}`,
          `public: ${key.publicKey}`,
          `seed:   ${key.seed}   (keep secret${spec.env ? `; ${spec.env}` : ""})`,
        ].join("\n"),
      );
    });
  addComponentCommands(trust);
  return trust;
}
