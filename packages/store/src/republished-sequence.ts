/** Skipped sequences awaited at once (writes republished out of order); beyond, the mirror is lost. */
export const MISSING_KEPT = 4096;

/** What one republished write did to a {@link RepublishedSequence}. */
export interface Arrival {
  /** The write is the newest seen so far. */
  readonly fresh: boolean;
  /** The mirror was complete and no longer is: a write it will not see was skipped. */
  readonly lost: boolean;
}

/**
 * Which writes of a stream a mirror fed by its republish has seen, by sequence. Pure. A stream's
 * sequences are contiguous and every write is republished, but nats-server may deliver two of
 * them out of order: a skipped sequence is awaited (a few thousand at most), not taken as lost.
 * The mirror is complete when it holds everything up to {@link lastSeen} but what is awaited;
 * it becomes so only through a read of the whole stream ({@link startReading} then
 * {@link finishReading}), which covers every write up to the stream's last sequence then.
 */
export class RepublishedSequence {
  #lastSeen = 0;
  /** The first sequence of the run seen since the last jump that could not be awaited. */
  #runStart = 0;
  readonly #missing = new Set<number>();
  #complete = false;
  #reading = false;

  /** The highest sequence seen (or covered by the last read). */
  get lastSeen(): number {
    return this.#lastSeen;
  }

  get complete(): boolean {
    return this.#complete;
  }

  /** No write at or below `lastSeen` is awaited: a key count taken now is the stream's at `lastSeen`. */
  get contiguous(): boolean {
    return this.#missing.size === 0;
  }

  /** Whether a write at or below `seq` is still awaited. */
  awaiting(seq: number): boolean {
    for (const missing of this.#missing) if (missing <= seq) return true;
    return false;
  }

  /** Records the write at `seq`. */
  arrive(seq: number): Arrival {
    const wasComplete = this.#complete;
    if (seq > this.#lastSeen + 1) {
      const skipped = seq - this.#lastSeen - 1;
      if ((this.#complete || this.#reading) && skipped <= MISSING_KEPT - this.#missing.size) {
        for (let s = this.#lastSeen + 1; s < seq; s++) this.#missing.add(s);
      } else {
        this.#complete = false;
        this.#missing.clear();
        this.#runStart = seq;
      }
    } else if (seq <= this.#lastSeen) {
      this.#missing.delete(seq);
    }
    const fresh = seq > this.#lastSeen;
    if (fresh) this.#lastSeen = seq;
    return { fresh, lost: wasComplete && !this.#complete };
  }

  /** The mirror no longer holds everything (a reconnect, a write awaited too long, a count unlike the stream's). */
  lose(): void {
    this.#complete = false;
  }

  /** The stream was deleted and made again (its sequence went down): everything seen is forgotten. */
  restart(): void {
    this.#lastSeen = 0;
    this.#missing.clear();
    this.#complete = false;
  }

  /** A read of the whole stream begins; writes arriving meanwhile are tracked for {@link finishReading}. */
  startReading(): void {
    this.#reading = true;
    this.#runStart = this.#lastSeen + 1;
    this.#missing.clear();
  }

  /**
   * The read listed the stream at its sequence `listedSeq`: the mirror is complete when every
   * write after that was seen since the read began (or is awaited). Returns whether it is.
   */
  finishReading(listedSeq: number): boolean {
    this.#reading = false;
    const covered = this.#lastSeen <= listedSeq || this.#runStart <= listedSeq + 1;
    if (!covered) return false;
    for (const missing of this.#missing) if (missing <= listedSeq) this.#missing.delete(missing);
    this.#lastSeen = Math.max(this.#lastSeen, listedSeq);
    this.#complete = true;
    return true;
  }

  /** A read that failed: the mirror stays as incomplete as it was. */
  abortReading(): void {
    this.#reading = false;
  }
}
