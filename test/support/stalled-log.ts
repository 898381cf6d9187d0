import { resourceNames } from "@arbiter/protocol";
import { jetstreamManager } from "@nats-io/jetstream";
import type { Msg, NatsConnection, Subscription } from "@nats-io/nats-core";
import { connectTo } from "../harness/index.js";
import type { SingleNodeArbiter } from "./arbiter.js";

/** A decision log that has gone silent: what the worker published into it, unacknowledged. */
export interface StalledDecisionLog extends AsyncDisposable {
  /** The connection holding the stall; it can subscribe to the decision subject again. */
  readonly nc: NatsConnection;
  /** Every decision message the worker published since the stall, in order. */
  readonly stalled: Msg[];
  /** The silent subscriber; unsubscribe it to let the next publish bounce as "no responders". */
  readonly subscription: Subscription;
  /** Ends the stall: the silent subscriber goes and the stream takes the decision subject again. */
  resume(): Promise<void>;
}

/**
 * Makes `arbiter`'s decision log go silent, as a stalled JetStream does: the stream no longer
 * takes the decision subject, and a subscriber there holds every publish without acknowledging
 * it (so it does not bounce as "no responders"). Disposing it closes the stall's connection.
 */
export async function stallDecisionLog(arbiter: SingleNodeArbiter): Promise<StalledDecisionLog> {
  const names = resourceNames();
  const jsm = await jetstreamManager(arbiter.nc);
  const info = await jsm.streams.info(names.decisionsStream);
  await jsm.streams.update(names.decisionsStream, {
    ...info.config,
    subjects: [`${names.decisionsSubjects.slice(0, -1)}elsewhere`],
  });
  const nc = await connectTo(arbiter.server.url);
  const stalled: Msg[] = [];
  const subscription = nc.subscribe(names.decisionsSubject, {
    callback: (_err, msg) => {
      stalled.push(msg);
    },
  });
  await nc.flush();
  return {
    nc,
    stalled,
    subscription,
    resume: async () => {
      subscription.unsubscribe();
      await jsm.streams.update(names.decisionsStream, info.config);
    },
    [Symbol.asyncDispose]: () => nc.close(),
  };
}
