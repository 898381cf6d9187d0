import { writeFileSync } from "node:fs";
import { ArbiterError, ErrorCode } from "@arbiter/protocol";
import {
  type ComponentInspection,
  createSigner,
  epochSecondsText,
  generateKey,
  inspectComponent,
  MAX_WASM_BYTES,
  signComponent,
} from "@arbiter/trust";
import type { Command } from "commander";
import { InputTooLargeError, readBounded } from "../bounded-read.js";
import { parseOptionalIntegerFlag } from "../flags.js";
import { ExitCode, emit } from "../output.js";

const DAY_SECONDS = 86_400;

/** Adds `trust inspect FILE.wasm` and `trust sign-component FILE.wasm` to the `trust` command. */
export function addComponentCommands(trust: Command): void {
  trust
    .command("inspect")
    .description(
      "read a component's embedded claims (wasmcloud_jwt or jwt section) and verify them: signature by the issuer, " +
        "module hash, expiry; exit 1 when unsigned or invalid",
    )
    .argument("<file>", "a .wasm module or component")
    .option("--issuers <keys>", "comma-separated A… keys; any other issuer is invalid")
    .option("--json", "print {file, valid, reasons, claims, …} as JSON")
    .action(async (file: string, flags: { issuers?: string; json?: boolean }) => {
      const issuers = flags.issuers
        ?.split(",")
        .map((key) => key.trim())
        .filter((key) => key !== "");
      const inspection = inspectComponent(await readInput(file), issuers ? { issuers } : {});
      emit(flags.json === true, { file, ...summary(inspection) }, () => describe(file, inspection));
      if (!inspection.valid) process.exitCode = ExitCode.Failed;
    });

  trust
    .command("sign-component")
    .description(
      "embed claims signed by an account key in a module or component (as wascap does), generating its M key " +
        "unless --subject-seed is given",
    )
    .argument("<file>", "a .wasm module or component")
    .option("--issuer-seed <seed>", "the account seed (SA…) that signs; default ARBITER_ISSUER_SEED")
    .option("--subject-seed <seed>", "the component's seed (SM…), to keep its identity across signings")
    .option("--name <name>", "the component's name in the claims")
    .option(
      "--tag <tag>",
      "a tag (repeatable)",
      (tag: string, tags: string[]) => [...tags, tag],
      [] as string[],
    )
    .option("--rev <n>", "the claims' revision number")
    .option("--ver <version>", "the claims' human-friendly version")
    .option("--expires-in-days <n>", "claims expire this many days from now")
    .option("--not-before-days <n>", "claims are not valid until this many days from now")
    .option("--out <file>", "where to write the signed binary; default FILE with .signed.wasm")
    .option("--json", "print {out, subject, issuer, hash, …} as JSON")
    .action(async (file: string, flags: SignFlags) => {
      const seed = flags.issuerSeed ?? process.env["ARBITER_ISSUER_SEED"];
      if (!seed) {
        throw new ArbiterError(
          ErrorCode.InvalidConfig,
          "no issuer: give --issuer-seed SA… or ARBITER_ISSUER_SEED",
        );
      }
      const issuer = createSigner(seed, "A");
      const generated = flags.subjectSeed === undefined ? generateKey("M") : null;
      const subject = createSigner(flags.subjectSeed ?? generated?.seed ?? "", "M").publicKey;
      const now = Math.floor(Date.now() / 1000);
      const days = (value: string | undefined, flag: string) => {
        const n = parseOptionalIntegerFlag(value, flag, { min: 0, max: 36_500 });
        return n === undefined ? undefined : now + n * DAY_SECONDS;
      };
      const rev = parseOptionalIntegerFlag(flags.rev, "--rev", { min: -(2 ** 31), max: 2 ** 31 - 1 });
      const expiresAt = days(flags.expiresInDays, "--expires-in-days");
      const notBefore = days(flags.notBeforeDays, "--not-before-days");
      const signed = signComponent(
        await readInput(file),
        {
          subject,
          issuedAt: now,
          ...(flags.name !== undefined ? { name: flags.name } : {}),
          ...(flags.tag.length > 0 ? { tags: flags.tag } : {}),
          ...(rev !== undefined ? { rev } : {}),
          ...(flags.ver !== undefined ? { ver: flags.ver } : {}),
          ...(expiresAt !== undefined ? { expiresAt } : {}),
          ...(notBefore !== undefined ? { notBefore } : {}),
        },
        issuer,
      );
      const out = flags.out ?? file.replace(/(\.wasm)?$/, ".signed.wasm");
      try {
        writeFileSync(out, signed.bytes);
      } catch (err) {
        throw new ArbiterError(ErrorCode.InvalidConfig, `cannot write ${out}: ${(err as Error).message}`, {
          cause: err,
        });
      }
      const result = {
        out,
        subject,
        issuer: issuer.publicKey,
        hash: signed.claims.wascap.hash,
        claims: signed.claims,
        ...(generated ? { subjectSeed: generated.seed } : {}),
      };
      emit(flags.json === true, result, () =>
        [
          `signed ${out}`,
          `subject: ${subject}`,
          `issuer:  ${issuer.publicKey}`,
          `hash:    ${signed.claims.wascap.hash}`,
          ...(generated
            ? [`subject seed: ${generated.seed}   (keep secret; --subject-seed to sign again)`]
            : []),
        ].join("\n"),
      );
    });
}

interface SignFlags {
  issuerSeed?: string;
  subjectSeed?: string;
  name?: string;
  tag: string[];
  rev?: string;
  ver?: string;
  expiresInDays?: string;
  notBeforeDays?: string;
  out?: string;
  json?: boolean;
}

async function readInput(file: string): Promise<Uint8Array> {
  try {
    return await readBounded(file, MAX_WASM_BYTES);
  } catch (err) {
    if (err instanceof InputTooLargeError) {
      throw new ArbiterError(ErrorCode.InvalidWasm, err.message, { cause: err });
    }
    throw new ArbiterError(ErrorCode.InvalidConfig, `cannot read ${file}: ${(err as Error).message}`, {
      cause: err,
    });
  }
}

function summary(inspection: ComponentInspection) {
  const { claims } = inspection;
  return {
    valid: inspection.valid,
    reasons: inspection.reasons,
    encoding: inspection.encoding,
    section: inspection.section,
    moduleHash: inspection.moduleHash,
    claims: claims && {
      name: claims.wascap.name ?? null,
      subject: claims.sub,
      issuer: claims.iss,
      issuedAt: isoTime(claims.iat),
      expiresAt: claims.exp == null ? null : isoTime(claims.exp),
      notBefore: claims.nbf == null ? null : isoTime(claims.nbf),
      hash: claims.wascap.hash,
      tags: claims.wascap.tags ?? [],
      rev: claims.wascap.rev ?? null,
      ver: claims.wascap.ver ?? null,
      callAlias: claims.wascap.call_alias ?? null,
      provider: claims.wascap.prov,
      id: claims.jti,
      wascapRevision: claims.wascap_revision ?? null,
    },
    token: inspection.token,
  };
}

function describe(file: string, inspection: ComponentInspection): string {
  const view = summary(inspection);
  const lines = [
    `${file}: ${inspection.valid ? "valid" : "INVALID"} (${view.encoding ?? "not WebAssembly"})`,
  ];
  if (view.claims) {
    const c = view.claims;
    lines.push(
      `  name:      ${c.name ?? "-"}`,
      `  subject:   ${c.subject}`,
      `  issuer:    ${c.issuer}`,
      `  issued:    ${c.issuedAt}`,
      `  expires:   ${c.expiresAt ?? "never"}`,
      ...(c.notBefore ? [`  not before: ${c.notBefore}`] : []),
      `  hash:      ${c.hash}`,
      `  tags:      ${c.tags.join(", ") || "-"}`,
      `  revision:  ${c.rev ?? "-"}   version: ${c.ver ?? "-"}   claims revision: ${c.wascapRevision ?? "-"}`,
      `  section:   ${view.section}`,
    );
  }
  if (view.moduleHash && !view.claims) lines.push(`  module hash: ${view.moduleHash}`);
  for (const reason of inspection.reasons) lines.push(`  ${reason.code}: ${reason.message}`);
  return lines.join("\n");
}

function isoTime(seconds: number): string {
  return epochSecondsText(seconds);
}
