import { ArbiterError, ErrorCode } from "@arbiter/protocol";
import { generateKey, type KeyRole } from "@arbiter/trust";
import { Command } from "commander";
import { emit } from "../output.js";

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
};

/** `arbiter trust keygen cluster|admin|host`. */
export function trustCommand(): Command {
  const trust = new Command("trust").description("keys and signatures");
  trust
    .command("keygen")
    .description("generate an nkey: cluster (C…), admin (O…) or host (N…)")
    .argument("<kind>", "cluster | admin | host")
    .option("--json", "print {kind, publicKey, seed} as JSON")
    .action((kind: string, flags: { json?: boolean }) => {
      const spec = ROLES[kind];
      if (!spec)
        throw new ArbiterError(
          ErrorCode.InvalidConfig,
          `unknown key kind ${JSON.stringify(kind)}: expected cluster, admin or host`,
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
  return trust;
}
