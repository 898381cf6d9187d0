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
