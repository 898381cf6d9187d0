import { z } from "zod";

/** The lattice events Arbiter follows, by their name in the subject and the CloudEvent `type`. */
export const HOST_LIFECYCLE_EVENTS = ["host_started", "host_heartbeat", "host_stopped"] as const;
/** One of {@link HOST_LIFECYCLE_EVENTS}. */
export type HostLifecycleEventName = (typeof HOST_LIFECYCLE_EVENTS)[number];

/** The CloudEvent `type` prefix of wasmCloud's lattice events (`com.wasmcloud.lattice.{name}`). */
export const LATTICE_EVENT_TYPE_PREFIX = "com.wasmcloud.lattice.";

/** Largest lattice event parsed; a heartbeat carries the host's inventory, which stays far below. */
export const MAX_LATTICE_EVENT_BYTES = 1024 * 1024;

/**
 * Deepest nesting of objects and arrays read in a lattice event or ping answer (the root at 1): a
 * heartbeat's inventory nests a few levels. JSON.parse costs ten times more per byte on nesting
 * than on flat text, so deeper texts are refused before they are parsed.
 */
export const MAX_LATTICE_EVENT_DEPTH = 64;

/**
 * Most objects and arrays read in a lattice event or ping answer: a heartbeat's inventory holds a
 * few per component and provider. JSON.parse costs as much on a megabyte of brackets nested 60
 * deep, repeated, as on one nesting (0.15 s), so more are refused before the text is parsed.
 */
export const MAX_LATTICE_EVENT_CONTAINERS = 10_000;

/**
 * What makes `text` too costly to parse, or null: objects and arrays nested deeper than
 * `maxDepth`, or more than `maxContainers` of them, brackets inside strings not counted. A pass
 * of `indexOf` and `charCodeAt`, far cheaper than the parse it spares. Pure.
 */
function tooCostlyToParse(text: string, maxDepth: number, maxContainers: number): string | null {
  let depth = 0;
  let containers = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x5b || c === 0x7b) {
      if (++depth > maxDepth) return `nested deeper than ${maxDepth} levels`;
      if (++containers > maxContainers) return `more than ${maxContainers} objects and arrays`;
    } else if (c === 0x5d || c === 0x7d) depth--;
    else if (c === 0x22) {
      let end = text.indexOf('"', i + 1);
      while (end !== -1 && isEscaped(text, end)) end = text.indexOf('"', end + 1);
      if (end === -1) return null;
      i = end;
    }
  }
  return null;
}

/** Whether the quote at `at` is escaped (an odd run of backslashes before it). */
function isEscaped(text: string, at: number): boolean {
  let backslashes = 0;
  while (text.charCodeAt(at - 1 - backslashes) === 0x5c) backslashes++;
  return backslashes % 2 === 1;
}

/** A host key as events and pings name it: one NATS-safe token (1.x hosts send their `N…` key). */
const HostKey = z
  .string()
  .min(1)
  .max(256)
  .regex(/^[^\s*>.]+$/, "expected a host key (one token, no spaces, dots or wildcards)");

const stringMap = z.record(z.string(), z.string());

/**
 * The CloudEvents 1.0 JSON envelope a wasmCloud host publishes (host crate `wasmbus/event.rs`:
 * `specversion`, `id`, `type`, `source` = the host's public key, `datacontenttype`, `time`, `data`).
 * Unknown fields are allowed, as any CloudEvent may carry extensions.
 */
export const LatticeCloudEventV1 = z.looseObject({
  specversion: z.literal("1.0"),
  id: z.string().min(1),
  type: z.string().min(1),
  source: HostKey,
  time: z.string().optional(),
  datacontenttype: z.string().optional(),
  data: z.unknown().optional(),
});
export type LatticeCloudEventV1 = z.infer<typeof LatticeCloudEventV1>;

/** `host_stopped` data: only `{labels}` in every 1.x release (DESIGN §1). */
export const HostStoppedDataV1 = z.looseObject({ labels: stringMap.optional() });
/** `host_started` data: `{friendly_name, labels, uptime_seconds, version}`. */
export const HostStartedDataV1 = z.looseObject({
  friendly_name: z.string().optional(),
  labels: stringMap.optional(),
  version: z.string().optional(),
});
/** `host_heartbeat` data: the host inventory (`host_id`, `components`, `providers`, `labels`, …). */
export const HostHeartbeatDataV1 = z.looseObject({
  host_id: HostKey,
  labels: stringMap.optional(),
  uptime_seconds: z.number().nonnegative().optional(),
});

/** A lifecycle event as Arbiter acts on it: which host (the event's `source`) did what. */
export interface HostLifecycleEvent {
  readonly name: HostLifecycleEventName;
  readonly host: string;
  readonly id: string;
  /** A heartbeat's `uptime_seconds`, when it has one. */
  readonly uptimeSeconds?: number;
}

/** What {@link parseLatticeEvent} makes of a message. */
export type ParsedLatticeEvent =
  | { readonly ok: true; readonly event: HostLifecycleEvent }
  /** A well-formed lattice event of another kind (0.82 hosts publish all of them on one subject). */
  | { readonly ok: true; readonly event: null }
  | { readonly ok: false; readonly reason: string };

/**
 * Parses one message from `wasmbus.evt.{lattice}[.{name}]`. Pure, never throws: anything that is
 * not a CloudEvents 1.0 JSON lattice event, or a lifecycle event whose data is not the host's, is
 * `ok: false` with the reason; a heartbeat whose `host_id` is not its `source` is refused too.
 * `expected` is the event name of the subject (null for the 0.82 subject that carries every kind).
 */
export function parseLatticeEvent(
  bytes: Uint8Array,
  expected: HostLifecycleEventName | null,
): ParsedLatticeEvent {
  if (bytes.length > MAX_LATTICE_EVENT_BYTES) {
    return { ok: false, reason: `larger than ${MAX_LATTICE_EVENT_BYTES} bytes` };
  }
  let value: unknown;
  try {
    const text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
    const costly = tooCostlyToParse(text, MAX_LATTICE_EVENT_DEPTH, MAX_LATTICE_EVENT_CONTAINERS);
    if (costly !== null) return { ok: false, reason: costly };
    value = JSON.parse(text);
  } catch (err) {
    return { ok: false, reason: `not JSON: ${(err as Error).message}` };
  }
  const envelope = LatticeCloudEventV1.safeParse(value);
  if (!envelope.success) return { ok: false, reason: `not a CloudEvent: ${issues(envelope.error)}` };
  const { type, source, id, data } = envelope.data;
  if (!type.startsWith(LATTICE_EVENT_TYPE_PREFIX)) {
    return { ok: false, reason: `type ${JSON.stringify(type.slice(0, 100))} is not a lattice event` };
  }
  const name = type.slice(LATTICE_EVENT_TYPE_PREFIX.length);
  const lifecycle = HOST_LIFECYCLE_EVENTS.find((known) => known === name);
  if (expected !== null && lifecycle !== expected) {
    return { ok: false, reason: `type ${JSON.stringify(type.slice(0, 100))} on the ${expected} subject` };
  }
  if (lifecycle === undefined) return { ok: true, event: null };
  const schema =
    lifecycle === "host_stopped"
      ? HostStoppedDataV1
      : lifecycle === "host_started"
        ? HostStartedDataV1
        : HostHeartbeatDataV1;
  const parsed = schema.safeParse(data);
  if (!parsed.success) return { ok: false, reason: `${lifecycle} data: ${issues(parsed.error)}` };
  if (lifecycle === "host_heartbeat" && (parsed.data as { host_id: string }).host_id !== source) {
    return { ok: false, reason: "host_heartbeat whose host_id is not its source" };
  }
  const uptime =
    lifecycle === "host_heartbeat" ? (parsed.data as { uptime_seconds?: number }).uptime_seconds : undefined;
  return {
    ok: true,
    event: { name: lifecycle, host: source, id, ...(uptime === undefined ? {} : { uptimeSeconds: uptime }) },
  };
}

/**
 * A 1.x host's answer to `wasmbus.ctl.v1.{lattice}.host.ping` (control interface
 * `CtlResponse<Host>`: `{success, message, response: {id, labels, friendly_name, …}}`).
 */
export const HostPingAnswerV1 = z.looseObject({
  success: z.boolean(),
  message: z.string().optional(),
  response: z.looseObject({ id: HostKey }),
});
export type HostPingAnswerV1 = z.infer<typeof HostPingAnswerV1>;

/**
 * Largest ping answer decoded. A host's answer is its id, labels, name and versions, a few
 * hundred bytes; every host may answer every ping, so one a thousand times larger is not read.
 */
export const MAX_PING_ANSWER_BYTES = 64 * 1024;

/** The host key a ping answer names, or null when the bytes are not a successful 1.x ping answer. */
export function pingAnswerHost(bytes: Uint8Array): string | null {
  if (bytes.length > MAX_PING_ANSWER_BYTES) return null;
  let value: unknown;
  try {
    const text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
    if (tooCostlyToParse(text, MAX_LATTICE_EVENT_DEPTH, MAX_LATTICE_EVENT_CONTAINERS) !== null) return null;
    value = JSON.parse(text);
  } catch {
    return null;
  }
  const parsed = HostPingAnswerV1.safeParse(value);
  return parsed.success && parsed.data.success ? parsed.data.response.id : null;
}

/**
 * What Arbiter keeps of a host's lifecycle in the active bucket (`h.<hash(lattice, host)>`):
 * when a worker last heard it beat (its own clock), and when it was pruned. `stoppedAt` is a
 * tombstone: a decision of that host evaluated at or before it is not indexed (one still in
 * flight when the host went away); `pruned` says its entries are gone (false while a worker is
 * removing them, so another finishes the job if that one dies).
 */
export const HostRecordV1 = z.object({
  lattice: z.string(),
  host: z.string(),
  lastSeenAt: z.iso.datetime().nullable(),
  stoppedAt: z.iso.datetime().nullable(),
  pruned: z.boolean(),
});
export type HostRecordV1 = z.infer<typeof HostRecordV1>;

function issues(error: z.ZodError): string {
  return error.issues
    .slice(0, 3)
    .map((i) => `${i.path.join(".") || "event"}: ${i.message}`)
    .join("; ");
}
