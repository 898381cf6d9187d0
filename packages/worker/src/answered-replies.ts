/**
 * The reply subjects a worker has answered lately, so that it answers each at most once.
 *
 * A host's request inbox is used for one request. NATS does not bind a reply subject to the
 * client that publishes it, and wasmCloud hosts take the first answer on their inbox whatever its
 * `requestId` (DESIGN §1). So a host that predicts another host's next inbox (async-nats numbers
 * them with a fixed increment) could otherwise ask for something the rules permit, again and
 * again, with that inbox as its reply subject, and the worker's answers would keep arriving
 * there until the victim's own request was pending and took one: a grant for whatever the
 * victim asked. Answering a reply subject once leaves the attacker one answer per worker per
 * window, which must land inside the millisecond or so the victim's request is pending; a later
 * request on the same subject (the victim's own, among them) is refused unanswered, so the victim
 * times out and fails closed without caching.
 *
 * Memory is bounded by time: subjects are kept in two generations of `windowMs / 2` each, so one
 * is remembered for at least half the window and at most all of it.
 */
export class AnsweredReplies {
  readonly #halfWindowMs: number;
  readonly #now: () => number;
  #current = new Set<string>();
  #previous = new Set<string>();
  #generationEnds: number;

  /** `now` gives milliseconds on a clock that does not go back (Date.now by default). */
  constructor(windowMs: number, now: () => number = Date.now) {
    this.#halfWindowMs = Math.max(1, Math.floor(windowMs / 2));
    this.#now = now;
    this.#generationEnds = now() + this.#halfWindowMs;
  }

  /** Subjects remembered now. */
  get size(): number {
    return this.#current.size + this.#previous.size;
  }

  /** True the first time `reply` is claimed within the window (the worker may answer it); false after. */
  claim(reply: string): boolean {
    const now = this.#now();
    if (now >= this.#generationEnds) {
      // A generation older than the window is dropped whole; after a long quiet both are.
      this.#previous = now >= this.#generationEnds + this.#halfWindowMs ? new Set() : this.#current;
      this.#current = new Set();
      this.#generationEnds = now + this.#halfWindowMs;
    }
    if (this.#current.has(reply) || this.#previous.has(reply)) return false;
    this.#current.add(reply);
    return true;
  }
}
