import { DEFAULT_POLICY_TOPIC } from "@arbiter/protocol";
import type { NatsConnection } from "@nats-io/nats-core";
import { fixtureJson } from "./fixtures.js";

/** The 1.x start-component fixture, with the parts a crafted request replaces. */
const base = fixtureJson("start-component") as Record<string, unknown> & {
  requestId: string;
  request: { componentId: string; imageRef: string };
  host: { publicKey: string; lattice: string };
};

/** The lattice, host key and image the fixture names, which crafted requests keep unless told. */
export const FIXTURE_REQUEST = {
  lattice: base.host.lattice,
  host: base.host.publicKey,
  imageRef: base.request.imageRef,
} as const;

/** A start-component request as a host may send it: the 1.x fixture under ids of its choosing. */
export interface CraftedRequest {
  readonly requestId: string;
  /** Default `<requestId>-component`. */
  readonly componentId?: string;
  /** The host key it names (default the fixture's). */
  readonly host?: string;
  /** JSON members added at the end of its top-level object, such as `,"pad":"…"` (any size). */
  readonly extra?: string;
}

/** The JSON text of a {@link CraftedRequest}. */
export function startComponentText(crafted: CraftedRequest): string {
  const request = structuredClone(base);
  request.requestId = crafted.requestId;
  request.request.componentId = crafted.componentId ?? `${crafted.requestId}-component`;
  if (crafted.host !== undefined) request.host.publicKey = crafted.host;
  return `${JSON.stringify(request).slice(0, -1)}${crafted.extra ?? ""}}`;
}

/** The `n`-th request id of a series (its first eight hex digits), in the 1.x hosts' shape. */
export function nthRequestId(n: number, series = "0194e000"): string {
  return `${series}-0000-7000-8000-${String(n).padStart(12, "0")}`;
}

/** Sends `text` on the policy topic over `nc`, as a host does, and parses the answer. */
export async function askPolicy(
  nc: NatsConnection,
  text: string,
): Promise<{ permitted: boolean; message: string | null }> {
  return (await nc.request(DEFAULT_POLICY_TOPIC, text, { timeout: 10_000 })).json();
}
