import { createHash } from "node:crypto";
import { resourceNames } from "@arbiter/protocol";
import { JetStreamApiCodes, JetStreamApiError, jetstream } from "@nats-io/jetstream";
import { type KV, Kvm } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/nats-core";
import { z } from "zod";
import { StoreUnavailableError } from "./errors.js";
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
}

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
 * wins each id. Throws StoreUnavailableError when the bucket cannot be opened.
 */
export async function openJetStreamReplayGuard(
  nc: NatsConnection,
  options: ReplayGuardOptions,
): Promise<ReplayGuard> {
  const config = ReplayGuardOptions.parse(options);
  const name = resourceNames(config.prefix).replayBucket;
  let kv: KV;
  try {
    kv = await new Kvm(jetstream(nc, { timeout: config.ackTimeoutMs })).create(name, {
      replicas: config.replicas,
      history: 1,
      ttl: config.windowMs,
    });
  } catch (err) {
    throw new StoreUnavailableError(`cannot open the ${name} bucket: ${errorText(err)}`, { cause: err });
  }
  return {
    claim: async (tokenId) => {
      try {
        await kv.create(replayKey(tokenId), "");
        return true;
      } catch (err) {
        if (err instanceof JetStreamApiError && err.code === JetStreamApiCodes.StreamWrongLastSequence) {
          return false;
        }
        throw new StoreUnavailableError(`cannot record the token id in ${name}: ${errorText(err)}`, {
          cause: err,
        });
      }
    },
  };
}

/** An in-memory {@link ReplayGuard} for one process (unit tests): ids expire after `windowMs`. */
export function createMemoryReplayGuard(windowMs: number, clock: () => number = Date.now): ReplayGuard {
  const seen = new Map<string, number>();
  return {
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

/** A KV key for any token id: ids are chosen by whoever signs, and KV keys allow few characters. */
function replayKey(tokenId: string): string {
  return createHash("sha256").update(tokenId).digest("hex");
}
