import type { Msg } from "@nats-io/nats-core";
import type { Logger } from "pino";
import { RateLimitedWarning } from "./rate-limited-warning.js";

/**
 * The bytes a received message holds: its body, headers, subject and reply subject (the client
 * keeps the frame whole for as long as the message is), or its body alone from a client that
 * cannot say. A host chooses its requests' headers as well as their bodies. Pure.
 */
export function messageBytes(msg: Msg): number {
  // nats.js gives every message it delivers a size(), outside the Msg interface.
  const sized: { readonly subject: string; readonly size?: unknown } = msg;
  if (typeof sized.size === "function") {
    const size: unknown = sized.size.call(msg);
    if (typeof size === "number" && size >= msg.data.length) return size;
  }
  return msg.data.length;
}

/** Requests handled before the worker yields to I/O (acknowledgements, replies, new requests). */
const REQUESTS_PER_SLICE = 16;

/** What {@link RequestQueue} needs. */
export interface RequestQueueDeps {
  /**
   * Requests held beyond which new ones are dropped unanswered: those waiting here and those
   * {@link RequestQueueDeps.held} elsewhere.
   */
  readonly limit: number;
  /**
   * Bytes of requests waiting here beyond which new ones are dropped unanswered too: a host
   * chooses how large its requests are, so a count alone bounds memory at that many megabytes.
   */
  readonly limitBytes: number;
  /**
   * Bytes held by requests already taken from the queue and not yet answered (their records,
   * waiting for the log's acknowledgement, and their messages' headers): they count against `limitBytes`.
   */
  readonly heldBytes: () => number;
  /**
   * Requests already taken from the queue and not yet answered (waiting for their record): they
   * hold memory too, so they count against `limit`.
   */
  readonly held: () => number;
  readonly log: Logger;
  /**
   * Handles one slice of requests, in arrival order; `more` says whether others are still waiting
   * (so the caller can hold its batch open). Must not throw.
   */
  readonly onSlice: (slice: readonly Msg[], more: boolean) => void;
}

/**
 * The bounded queue between the policy subscription and deciding: requests beyond the limit
 * (counting those still waiting for their record, so that a slow or silent decision log cannot
 * make a flood pile up in memory) are dropped unanswered (the host times out and fails closed) and reported with their true count;
 * queued requests are handled a slice at a time, yielding to I/O between slices, so
 * acknowledgements and replies are not held behind a long run of new requests.
 */
export class RequestQueue {
  readonly #deps: RequestQueueDeps;
  readonly #shedWarning: RateLimitedWarning;
  #queue: Msg[] = [];
  #bytes = 0;
  #draining = false;
  shed = 0;

  constructor(deps: RequestQueueDeps) {
    this.#deps = deps;
    this.#shedWarning = new RateLimitedWarning(
      deps.log,
      "overloaded: dropping policy requests unanswered (hosts fail closed)",
      "dropped",
      () => ({
        queued: this.#queue.length,
        queuedBytes: this.#bytes,
        heldBytes: deps.heldBytes(),
        held: deps.held(),
        limit: deps.limit,
        limitBytes: deps.limitBytes,
      }),
    );
  }

  /** Requests waiting. */
  get length(): number {
    return this.#queue.length;
  }

  /** Queues a request, or drops it (counted, reported) when the queue is full. */
  push(msg: Msg): void {
    const bytes = messageBytes(msg);
    const holding = this.#bytes + this.#deps.heldBytes();
    if (
      this.#queue.length + this.#deps.held() >= this.#deps.limit ||
      (holding > 0 && holding + bytes > this.#deps.limitBytes)
    ) {
      this.shed++;
      this.#shedWarning.count();
      return;
    }
    this.#queue.push(msg);
    this.#bytes += bytes;
    if (!this.#draining) {
      this.#draining = true;
      setImmediate(() => this.#drain());
    }
  }

  /** Reports drops not yet logged (for `stop()`). */
  flushWarnings(): void {
    this.#shedWarning.flush();
  }

  #drain(): void {
    let slice: Msg[];
    if (this.#queue.length <= REQUESTS_PER_SLICE) {
      slice = this.#queue;
      this.#queue = [];
    } else {
      slice = this.#queue.splice(0, REQUESTS_PER_SLICE);
    }
    for (const msg of slice) this.#bytes -= messageBytes(msg);
    this.#deps.onSlice(slice, this.#queue.length > 0);
    if (this.#queue.length > 0) setImmediate(() => this.#drain());
    else this.#draining = false;
  }
}
