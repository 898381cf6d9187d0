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
  /** Extra environment for the host process (e.g. `TMPDIR`, where it unpacks provider binaries). */
  readonly env?: Record<string, string>;
  /** A NATS `.creds` file (user JWT and seed) for both of the host's connections; default none. */
  readonly credsFile?: string;
  /** The host's own key (`--host-seed`, an `SN…` seed), so that its public key is known before it starts; default a new one. */
  readonly hostSeed?: string;
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
      ...(options.hostSeed === undefined ? [] : ["--host-seed", options.hostSeed]),
    ],
    {
      ready: /^\{"event":"started"/,
      timeout: 60_000,
      env: { RUST_LOG: "info", ...options.env },
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

/** Sends `provider.start` for a provider loaded from `providerRef`; resolves to the host's acknowledgement. */
export async function startProviderFrom(
  nc: NatsConnection,
  host: RunningWasmcloudHost,
  providerId: string,
  providerRef: string,
): Promise<{ success: boolean; message: string }> {
  const command = { provider_id: providerId, provider_ref: providerRef, host_id: host.hostId, config: [] };
  const reply = await nc.request(
    `wasmbus.ctl.v1.${host.lattice}.provider.start.${host.hostId}`,
    JSON.stringify(command),
    { timeout: 10_000 },
  );
  return reply.json();
}

/** The host's provider_started or provider_start_failed event for `providerId`, after index `from`. */
export function providerOutcome(events: Recorder, providerId: string, from = 0) {
  return until(
    () =>
      events.seen
        .slice(from)
        .find(
          (e) =>
            (e.subject.endsWith(".provider_started") || e.subject.endsWith(".provider_start_failed")) &&
            e.text.includes(`"${providerId}"`),
        ),
    {
      name: `the host's provider_started or provider_start_failed event for ${providerId}`,
      timeout: 20_000,
    },
  );
}

/** `(module (func (export "f") (result i32) i32.const 42))`. */
const ANSWER_MODULE = [
  ...[0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00],
  ...[0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7f],
  ...[0x03, 0x02, 0x01, 0x00],
  ...[0x07, 0x05, 0x01, 0x01, 0x66, 0x00, 0x00],
  ...[0x0a, 0x06, 0x01, 0x04, 0x00, 0x41, 0x2a, 0x0b],
];

/**
 * A component exporting one root function `f: func() -> u32` (returning 42), hand-assembled from
 * the component model's binary format: the core module above, an instance of it, the function type,
 * an alias of the core export, `canon lift` and the export; then `label` in a custom section. The
 * host serves such an export over wRPC as `{lattice}.{component id}.wrpc.0.0.1.f`.
 */
export function exportingComponent(label: string): Uint8Array {
  const section = (id: number, content: number[]) => [id, ...leb128(content.length), ...content];
  const name = new TextEncoder().encode("arbiter-peers");
  const payload = new TextEncoder().encode(label);
  return Uint8Array.from([
    ...COMPONENT_PREAMBLE,
    ...section(0x01, ANSWER_MODULE), // core module
    ...section(0x02, [0x01, 0x00, 0x00, 0x00]), // core instance: instantiate module 0, no args
    ...section(0x07, [0x01, 0x40, 0x00, 0x00, 0x79]), // type 0: func() -> u32
    ...section(0x06, [0x01, 0x00, 0x00, 0x01, 0x00, 0x01, 0x66]), // alias core func: instance 0 export "f"
    ...section(0x08, [0x01, 0x00, 0x00, 0x00, 0x00, 0x00]), // canon lift core func 0, no options, type 0
    ...section(0x0b, [0x01, 0x00, 0x01, 0x66, 0x01, 0x00, 0x00]), // export "f" (func 0)
    ...section(0x00, [...leb128(name.length), ...name, ...payload]),
  ]);
}

/**
 * Publishes a wRPC invocation of the root function `func` of `componentId` with an empty payload and
 * a reply subject, as a wRPC client's handshake: enough for the host to run its policy check.
 */
export async function invokeRootFunction(
  nc: NatsConnection,
  lattice: string,
  componentId: string,
  func: string,
): Promise<void> {
  nc.publish(`${lattice}.${componentId}.wrpc.0.0.1.${func}`, new Uint8Array(), {
    reply: `_INBOX.arbiter-peers.${componentId}`,
  });
  await nc.flush();
}
