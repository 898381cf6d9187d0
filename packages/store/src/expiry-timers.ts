import { ExpiryTimerV1, type ResourceNames } from "@arbiter/protocol";
import {
  DiscardPolicy,
  JetStreamApiError,
  type JetStreamManager,
  jetstream,
  RetentionPolicy,
  StorageType,
  type StreamConfig,
} from "@nats-io/jetstream";
import { type NatsConnection, RequestError } from "@nats-io/nats-core";
import { createFeedConsumer } from "./durable-feed.js";
import { StoreUnavailableError } from "./errors.js";
import { errorText, parseJsonOrNull } from "./text.js";

/**
 * How many expiry timers the shared consumer may hold out at once: a timer not yet due is held
 * (NAKed with a delay) until it is, so this bounds the distinct pending expiries, not the load.
 */
export const EXPIRY_MAX_ACK_PENDING = 1_000_000;

/** nats-server's error code for a publish refused by a stream's per-subject limit (`discard_new_per_subject`). */
const MAX_MSGS_PER_SUBJECT_EXCEEDED = 10077;

/** The subject of the timer for `expiresAt` (unix seconds): `<prefix>.expiries.<expiresAt>`. */
export function expiryTimerSubject(names: ResourceNames, expiresAt: number): string {
  return `${names.expiriesSubjects.slice(0, -1)}${expiresAt}`;
}

/**
 * The configuration of the expiries stream: a work queue holding at most one message per subject
 * and refusing a second (`discard_new_per_subject`), so each distinct expiry has one timer for as
 * long as it is pending, however often it is armed; an acknowledged timer leaves the stream.
 */
export function expiriesStreamConfig(
  names: ResourceNames,
  replicas: number,
): Partial<StreamConfig> & {
  name: string;
} {
  return {
    name: names.expiriesStream,
    subjects: [names.expiriesSubjects],
    retention: RetentionPolicy.Workqueue,
    storage: StorageType.File,
    discard: DiscardPolicy.New,
    max_msgs_per_subject: 1,
    discard_new_per_subject: true,
    num_replicas: replicas,
    deny_delete: true,
    deny_purge: true,
    description: "Arbiter expiry timers: one per distinct claims expiry of a permitted cached decision",
  };
}

/**
 * Creates the shared consumer of the expiries stream when it is missing (idempotent; an admin's
 * store calls it): a timer is held by one worker at a time, and redelivered when it dies.
 */
export async function createExpiriesConsumer(
  jsm: JetStreamManager,
  names: ResourceNames,
  ackWaitMs: number,
): Promise<void> {
  await createFeedConsumer(jsm, names.expiriesStream, names.expiriesConsumer, ackWaitMs, {
    maxAckPending: EXPIRY_MAX_ACK_PENDING,
  });
}

/**
 * What arming a timer did: `armed` stored it, `pending` found it there already (nothing changes),
 * `missing` found no stream on the subject (an admin's store older than the timers made the rest).
 */
export type ArmOutcome = "armed" | "pending" | "missing";

/**
 * Arms expiry timers on `nc`: the returned function stores the timer of `expiresAt` unless one is
 * pending already. It throws StoreUnavailableError when the stream is there and does not take the
 * timer (no acknowledgement, an error other than the per-subject limit).
 */
export function expiryTimerArmer(
  nc: NatsConnection,
  names: ResourceNames,
): (expiresAt: number) => Promise<ArmOutcome> {
  const js = jetstream(nc);
  return async (expiresAt) => {
    const body: ExpiryTimerV1 = ExpiryTimerV1.parse({ expiresAt });
    try {
      await js.publish(expiryTimerSubject(names, expiresAt), JSON.stringify(body));
      return "armed";
    } catch (err) {
      if (err instanceof JetStreamApiError && err.code === MAX_MSGS_PER_SUBJECT_EXCEEDED) return "pending";
      // nats.js reports a publish nothing stored (no stream on the subject) as JetStream not enabled.
      if (err instanceof Error && err.cause instanceof RequestError && err.cause.isNoResponders()) {
        return "missing";
      }
      throw new StoreUnavailableError(`cannot arm the expiry timer of ${expiresAt}: ${errorText(err)}`, {
        cause: err,
      });
    }
  };
}

/**
 * The timer a message of the expiries stream holds, or null when it is not one: its body an
 * {@link ExpiryTimerV1} stored under that expiry's own subject (one under another subject would
 * hold that subject, and keep its real timer out, for a time of its choosing).
 */
export function parseExpiryTimer(
  names: ResourceNames,
  subject: string,
  data: Uint8Array,
): ExpiryTimerV1 | null {
  const parsed = ExpiryTimerV1.safeParse(parseJsonOrNull(new TextDecoder().decode(data)));
  if (!parsed.success || expiryTimerSubject(names, parsed.data.expiresAt) !== subject) return null;
  return parsed.data;
}
