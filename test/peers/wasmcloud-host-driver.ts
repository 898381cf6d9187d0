import { pathToFileURL } from "node:url";
import type { NatsConnection } from "@nats-io/nats-core";
import { until } from "../harness/index.js";
import { type PeerProcess, startPeer } from "./peer-process.js";
import { wasmcloudHostBin } from "./peers-cache.js";

// Driving the real wasmCloud host of the peers cache over NATS, as wadm or `wash` would.

/** The component-model preamble: magic, version 0x0d, layer 1. */
const COMPONENT_PREAMBLE = [0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00];

/**
 * A tiny component, hand-assembled: the preamble and one custom section named `arbiter-peers` holding
 * `label`, so that each test's component has bytes of its own. It imports and exports nothing.
 */
export function tinyComponent(label: string): Uint8Array {
  const name = new TextEncoder().encode("arbiter-peers");
  const payload = new TextEncoder().encode(label);
  const content = [...leb128(name.length), ...name, ...payload];
  return Uint8Array.from([...COMPONENT_PREAMBLE, 0x00, ...leb128(content.length), ...content]);
}

function leb128(value: number): number[] {
  const bytes: number[] = [];
  let rest = value;
  do {
    const low = rest & 0x7f;
    rest >>>= 7;
    bytes.push(rest === 0 ? low : low | 0x80);
  } while (rest !== 0);
  return bytes;
}

/** How {@link startWasmcloudHost} configures the host. */
export interface WasmcloudHostOptions {
  /** NATS URL; credentials may be given in it (`nats://user:pass@host:port`), as the host reads them there. */
  readonly natsUrl: string;
  readonly lattice: string;
  readonly policyTopic: string;
  readonly changesTopic: string;
  readonly policyTimeoutMs: number;
  /** A NATS `.creds` file (user JWT and seed) for both of the host's connections; default none. */
  readonly credsFile?: string;
}

/** A running host and what it said about itself on start. */
export interface RunningWasmcloudHost extends AsyncDisposable {
  readonly process: PeerProcess;
  readonly hostId: string;
  readonly lattice: string;
  /** The wasmCloud version the host reports (ping, events). */
  readonly version: string;
}

/** Starts the cached host (throws `PeerMissingError` when there is none) and resolves once it is up. */
export async function startWasmcloudHost(options: WasmcloudHostOptions): Promise<RunningWasmcloudHost> {
  const { bin } = wasmcloudHostBin();
  const process = await startPeer(
    bin,
    [
      "--nats-url",
      options.natsUrl,
      "--lattice",
      options.lattice,
      "--policy-topic",
      options.policyTopic,
      "--policy-changes-topic",
      options.changesTopic,
      "--policy-timeout-ms",
      String(options.policyTimeoutMs),
      ...(options.credsFile === undefined ? [] : ["--nats-creds", options.credsFile]),
    ],
    {
      ready: /^\{"event":"started"/,
      timeout: 60_000,
      env: { RUST_LOG: "info" },
    },
  );
  const line = process.stdout.find((l) => l.startsWith('{"event":"started"'));
  const started = JSON.parse(line ?? "{}") as { hostId: string; lattice: string; version: string };
  return { process, ...started, [Symbol.asyncDispose]: () => process.stop() };
}

/** Everything published on `subject` from now on, raw, for `until` to look through. */
export async function record(nc: NatsConnection, subject: string) {
  const seen: { subject: string; text: string }[] = [];
  const sub = nc.subscribe(subject, {
    callback: (_err, msg) => {
      seen.push({ subject: msg.subject, text: msg.string() });
    },
  });
  await nc.flush();
  return { seen, [Symbol.asyncDispose]: () => sub.drain() };
}

/** What {@link record} returns. */
export type Recorder = Awaited<ReturnType<typeof record>>;

/** Sends `component.scale` for a component loaded from `file`; resolves to the host's acknowledgement. */
export async function scaleFromFile(
  nc: NatsConnection,
  host: RunningWasmcloudHost,
  componentId: string,
  file: string,
): Promise<{ success: boolean; message: string }> {
  const command = {
    component_ref: pathToFileURL(file).href,
    component_id: componentId,
    count: 1,
    host_id: host.hostId,
    config: [],
    allow_update: false,
  };
  const reply = await nc.request(
    `wasmbus.ctl.v1.${host.lattice}.component.scale.${host.hostId}`,
    JSON.stringify(command),
    { timeout: 10_000 },
  );
  return reply.json();
}

/** The host's component_scaled or component_scale_failed event for `componentId`, after index `from`. */
export function scaleOutcome(events: Recorder, componentId: string, from = 0) {
  return until(
    () =>
      events.seen
        .slice(from)
        .find(
          (e) =>
            (e.subject.endsWith(".component_scaled") || e.subject.endsWith(".component_scale_failed")) &&
            e.text.includes(`"${componentId}"`),
        ),
    {
      name: `the host's component_scaled or component_scale_failed event for ${componentId}`,
      timeout: 20_000,
    },
  );
}

/** The policy requests the host sent about `componentId`, as raw text. */
export function requestsAbout(requests: Recorder, componentId: string): string[] {
  return requests.seen.map((r) => r.text).filter((text) => text.includes(`"componentId":"${componentId}"`));
}
