import { createHash } from "node:crypto";
import { ArbiterError, ErrorCode, resourceNames } from "@arbiter/protocol";
import { DiscardPolicy, JetStreamApiCodes, jetstream, type StreamConfig } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/nats-core";
import { z } from "zod";
import { AckMux } from "./ack-mux.js";
import { isStoreUnavailableError, StoreUnavailableError } from "./errors.js";
import { errorText } from "./text.js";

/**
 * Token ids (`jti`) of signed requests seen within the replay window, shared by every worker: the
 * first claim of an id wins, any later claim of it within the window (on any worker) loses.
 */
export interface ReplayGuard {
  /**
   * True when `tokenId` had not been claimed within the window (it is claimed now), false when it
   * had. Throws StoreUnavailableError when the claim cannot be made or confirmed.
   */
  claim(tokenId: string): Promise<boolean>;
  /** Stops listening for acknowledgements; claims still waiting fail. */
  close(): void;
}

/**
 * How long the replay bucket remembers token ids when whoever deploys Arbiter creates it (the
 * workers' default maximum token age, 60 s, plus their default clock skew, 5 s).
 */
export const DEFAULT_REPLAY_WINDOW_MS = 65_000;

/** Options of {@link openJetStreamReplayGuard}. */
export const ReplayGuardOptions = z.object({
  prefix: z
    .string()
    .regex(/^[A-Za-z0-9_-]+$/)
    .default("arbiter"),
  replicas: z.number().int().min(1).max(5).default(1),
  /** How long a claimed id is remembered: the oldest token accepted, plus the clock skew allowed. */
  windowMs: z.number().int().positive(),
  ackTimeoutMs: z.number().int().positive().default(5000),
});
export type ReplayGuardOptions = z.input<typeof ReplayGuardOptions>;

/**
 * Opens (creating it when missing) the replay bucket (`{prefix}-replay`): a KV bucket whose
 * entries expire after the window (its max_age), written create-only so that exactly one worker
 * wins each id. Throws StoreUnavailableError when the bucket cannot be opened, or when an existing
 * one would forget an id within the window (a shorter max_age, or limits that evict old entries).
 */
export async function openJetStreamReplayGuard(
  nc: NatsConnection,
  options: ReplayGuardOptions,
): Promise<ReplayGuard> {
  const config = ReplayGuardOptions.parse(options);
  const name = resourceNames(config.prefix).replayBucket;
  let problem: string | null;
  let rememberedMs: number;
  try {
    const kv = await new Kvm(jetstream(nc, { timeout: config.ackTimeoutMs })).create(name, {
      replicas: config.replicas,
      history: 1,
      ttl: config.windowMs,
    });
    // An existing bucket is used as it is (with the shipped permissions only an admin creates it):
    // whoever made it decides how long ids are remembered.
    const { ttl, streamInfo } = await kv.status();
    rememberedMs = ttl;
    problem = dropsIdsEarly(streamInfo.config, name);
  } catch (err) {
    throw new StoreUnavailableError(
      `cannot open the ${name} bucket: ${errorText(err)} (with the shipped permissions an admin creates it: \`arbiter rules apply\`)`,
      { cause: err },
    );
  }
  if (rememberedMs !== 0 && rememberedMs < config.windowMs) {
    throw new ArbiterError(
      ErrorCode.InvalidConfig,
      `the ${name} bucket remembers token ids for ${rememberedMs} ms, less than this worker's maximum token age plus clock skew (${config.windowMs} ms): a token could be replayed after its id is forgotten; lower the maximum token age or recreate the bucket with a longer max_age`,
    );
  }
  if (problem !== null) throw new StoreUnavailableError(problem);
  // A KV create is a publish that expects no earlier message on the key's subject; sent through
  // the AckMux it costs a fraction of the client CPU of `kv.create`, once per signed request.
  const acks = new AckMux(nc, `KV_${name}`, config.ackTimeoutMs);
  return {
    claim: async (tokenId) => {
      const key = replayKey(tokenId);
      try {
        const ack = await acks.publish(`$KV.${name}.${key}`, EMPTY, key, {
          "Nats-Expected-Last-Subject-Sequence": "0",
        });
        // A duplicate (same id within the stream's duplicate window) was stored before: seen.
        return !ack.duplicate;
      } catch (err) {
        if (isStoreUnavailableError(err) && err.jsErrCode === JetStreamApiCodes.StreamWrongLastSequence) {
          return false;
        }
        throw new StoreUnavailableError(`cannot record the token id in ${name}: ${errorText(err)}`, {
          cause: err,
        });
      }
    },
    close: () => acks.close(),
  };
}

/** An in-memory {@link ReplayGuard} for one process (unit tests): ids expire after `windowMs`. */
export function createMemoryReplayGuard(windowMs: number, clock: () => number = Date.now): ReplayGuard {
  const seen = new Map<string, number>();
  return {
    close: () => {},
    claim: async (tokenId) => {
      const now = clock();
      for (const [id, expires] of seen) {
        if (expires > now) break;
        seen.delete(id);
      }
      const expires = seen.get(tokenId);
      if (expires !== undefined && expires > now) return false;
      seen.delete(tokenId);
      seen.set(tokenId, now + windowMs);
      return true;
    },
  };
}

const EMPTY = new Uint8Array(0);

/** Why the bucket's stream would drop token ids before they expire (limits, a mirror), or null when it keeps them. */
function dropsIdsEarly(stream: StreamConfig, name: string): string | null {
  const lead = `the ${name} bucket (stream ${stream.name})`;
  if (stream.discard !== DiscardPolicy.New) {
    const limits = [
      (stream.max_msgs ?? -1) > 0 ? `max_msgs ${stream.max_msgs}` : null,
      (stream.max_bytes ?? -1) > 0 ? `max_bytes ${stream.max_bytes}` : null,
    ].filter((l) => l !== null);
    if (limits.length > 0) {
      return `${lead} drops old token ids when full (${limits.join(", ")}, discard old): replays would pass; delete the bucket`;
    }
  }
  if (stream.mirror || (stream.sources?.length ?? 0) > 0) {
    return `${lead} is a mirror or has sources, not a bucket workers write to; delete the bucket`;
  }
  return null;
}

/** A KV key for any token id: ids are chosen by whoever signs, and KV keys allow few characters. */
function replayKey(tokenId: string): string {
  return createHash("sha256").update(tokenId).digest("hex");
}
