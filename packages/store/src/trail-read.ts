import { resourceNames } from "@arbiter/protocol";
import {
  DeliverPolicy,
  JetStreamApiCodes,
  JetStreamApiError,
  type JetStreamClient,
  type JetStreamManager,
  jetstream,
  jetstreamManager,
  type OrderedConsumerOptions,
} from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import { BATCH_SIGNATURE_HEADER, sealedDecisionTexts } from "./decision-batch.js";
import { StoreUnavailableError } from "./errors.js";
import { orderedConsumer, orderedMessages } from "./ordered-read.js";
import { errorText } from "./text.js";

/** A stream's name and the sequences it holds now. */
export interface TrailStreamBounds {
  readonly name: string;
  /** The first sequence it holds (past 1 once records aged out); `lastSeq + 1` when it holds none. */
  readonly firstSeq: number;
  readonly lastSeq: number;
}

/** A message of the rules or decision stream, as an audit reads it. */
export interface TrailMessage {
  readonly seq: number;
  readonly time: Date;
  /** The rule event's text; for a decision message, its records sealed (see `sealedDecisionTexts`). */
  readonly texts: readonly string[];
}

/** Reads the rules and decision streams message by message, with their sequences and times. */
export interface TrailSource {
  /** The two streams' names and bounds now; throws StoreUnavailableError when one is not there. */
  bounds(): Promise<{ readonly rules: TrailStreamBounds; readonly decisions: TrailStreamBounds }>;
  /** The rule events up to `lastSeq`, in order. */
  ruleEvents(lastSeq: number): AsyncIterable<TrailMessage>;
  /**
   * The decision messages from `since` (or the first held) to `lastSeq`, stopping before the first
   * stored after `until`, in order.
   */
  decisionMessages(window: { since?: Date; until?: Date; lastSeq: number }): AsyncIterable<TrailMessage>;
}

/**
 * A {@link TrailSource} over the streams of `prefix` on a connection the caller owns; it creates
 * nothing (ordered consumers only, as a reader may).
 */
export function openTrailSource(nc: NatsConnection, options: { readonly prefix?: string } = {}): TrailSource {
  const names = resourceNames(options.prefix);
  const js = jetstream(nc);
  let manager: Promise<JetStreamManager> | undefined;
  const jsm = () => {
    manager ??= jetstreamManager(nc);
    return manager;
  };

  async function bounds(stream: string): Promise<TrailStreamBounds> {
    try {
      const { state } = await (await jsm()).streams.info(stream);
      const firstSeq = state.messages === 0 ? state.last_seq + 1 : state.first_seq;
      return { name: stream, firstSeq, lastSeq: state.last_seq };
    } catch (err) {
      const missing = err instanceof JetStreamApiError && err.code === JetStreamApiCodes.StreamNotFound;
      throw new StoreUnavailableError(
        missing ? `stream ${stream} is not there` : `cannot read stream ${stream}: ${errorText(err)}`,
        { cause: err },
      );
    }
  }

  return {
    async bounds() {
      return { rules: await bounds(names.rulesStream), decisions: await bounds(names.decisionsStream) };
    },
    ruleEvents: (lastSeq) =>
      read(js, names.rulesStream, { opt_start_seq: 1 }, lastSeq, undefined, (m) => [m.string()]),
    decisionMessages: ({ since, until, lastSeq }) =>
      read(
        js,
        names.decisionsStream,
        since
          ? { deliver_policy: DeliverPolicy.StartTime, opt_start_time: since.toISOString() }
          : { opt_start_seq: 1 },
        lastSeq,
        until,
        (m) => sealedDecisionTexts(m.data, m.headers?.get(BATCH_SIGNATURE_HEADER) || undefined),
      ),
  };
}

async function* read(
  js: JetStreamClient,
  stream: string,
  start: Partial<OrderedConsumerOptions>,
  lastSeq: number,
  until: Date | undefined,
  texts: (m: { string(): string; data: Uint8Array; headers?: { get(k: string): string } }) => string[],
): AsyncIterable<TrailMessage> {
  if (lastSeq < 1) return;
  const consumer = await orderedConsumer(js, stream, {
    deliver_policy: DeliverPolicy.StartSequence,
    ...start,
  });
  for await (const m of orderedMessages(consumer, false)) {
    if (m.seq > lastSeq || (until !== undefined && m.time > until)) return;
    yield { seq: m.seq, time: m.time, texts: texts(m) };
    if (m.seq === lastSeq) return;
  }
}
