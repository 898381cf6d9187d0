// How a worker packs sealed decision records into decision-log messages: one record per line,
// each line the record's body with its final "}" replaced by its (ASCII) seal.

/** The size in bytes of a record's line in a batch message, its newline included. */
export function lineSize(body: Uint8Array, seal: string): number {
  return body.length - 1 + seal.length + 1;
}

/**
 * Splits lines of the given sizes (newline included), in order, into runs whose message stays
 * within `limit` bytes. A line larger than `limit` on its own still gets a run of its own. Returns
 * `[from, to)` index pairs covering every line.
 */
export function batchRuns(sizes: readonly number[], limit: number): Array<[number, number]> {
  const runs: Array<[number, number]> = [];
  let from = 0;
  let bytes = 0;
  for (let i = 0; i < sizes.length; i++) {
    const size = sizes[i]!;
    // The last line of a message has no newline: a run may end one byte past the limit's count.
    if (i > from && bytes + size - 1 > limit) {
      runs.push([from, i]);
      from = i;
      bytes = 0;
    }
    bytes += size;
  }
  if (sizes.length > 0) runs.push([from, sizes.length]);
  return runs;
}

/** The body of a batch message: each body with its final "}" replaced by its seal, one per line. */
export function batchLines(bodies: readonly Uint8Array[], seals: readonly string[]): Buffer {
  let size = -1;
  for (let i = 0; i < bodies.length; i++) size += lineSize(bodies[i]!, seals[i]!);
  const lines = Buffer.allocUnsafe(Math.max(size, 0));
  let at = 0;
  for (let i = 0; i < bodies.length; i++) {
    const body = bodies[i]!;
    lines.set(body.subarray(0, body.length - 1), at);
    at += body.length - 1;
    at += lines.write(seals[i]!, at, "latin1");
    if (at < lines.length) lines[at++] = 0x0a;
  }
  return lines;
}
