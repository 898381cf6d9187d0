import { readFileSync } from "node:fs";

/** The three real 1.x requests and the answers the example rules give them. */
export const FIXTURES = [
  { name: "start-component", permitted: false },
  { name: "start-provider", permitted: true },
  { name: "perform-invocation", permitted: true },
] as const;

/** The bytes of a fixture request exactly as the host sent them. */
export function fixtureBytes(name: string): Uint8Array {
  return readFileSync(new URL(`../data/wasmcloud-v1/${name}.json`, import.meta.url));
}

/** A fixture request parsed, for building variants of it. */
export function fixtureJson(name: string): Record<string, unknown> & { requestId: string } {
  return JSON.parse(readFileSync(new URL(`../data/wasmcloud-v1/${name}.json`, import.meta.url), "utf8"));
}

/** The example rules shipped under deploy/. */
export function exampleRulesText(): string {
  return readFileSync(new URL("../../deploy/rules/example.yaml", import.meta.url), "utf8");
}

/**
 * A 0.82 (Rust host) `start_actor` request for the component of the 1.x fixtures, signed by
 * wasmCloud's issuer, in the field order the host sends. Parts are replaced by the callers.
 */
export function legacyStartActor(requestId = "d4b1c1d0-0000-4000-8000-000000000082") {
  return {
    requestId,
    source: {
      publicKey: null as string | null,
      contractId: null as string | null,
      linkName: null as string | null,
      capabilities: [] as string[],
      issuer: null as string | null,
      issuedOn: null as string | null,
      expiresAt: null as number | null,
      expired: false,
    },
    target: {
      publicKey: "MBFFVNGFK3IA2ZXXG5DQXQNYM6TNG45PHJMJIJFVFI6YKS3XTXL3DRRK",
      issuer: "ACOJJN6WUP4ODD75XEBKKTCCUJJCY5ZKQ56XVKYK4BEJWGVAOOQHZMCW" as string | null,
      contractId: null as string | null,
      linkName: null as string | null,
    },
    host: {
      publicKey: "NBLSJGGOETB677FQL63PWKDCVMOW4LXVI7S6WXSP55H7L5RNRKUDZKGE",
      latticeId: "default",
      labels: { "hostcore.os": "linux" } as Record<string, string>,
      clusterIssuers: [] as string[],
    },
    action: "start_actor" as "start_actor" | "start_provider" | "perform_invocation",
  };
}
