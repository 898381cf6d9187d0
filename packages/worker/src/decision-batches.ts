// How a worker packs decision records into decision-log messages: one record body per line.

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

/** The body of a batch message: the bodies, one per line. */
export function batchLines(bodies: readonly Uint8Array[]): Buffer {
  let size = -1;
  for (const body of bodies) size += body.length + 1;
  const lines = Buffer.allocUnsafe(Math.max(size, 0));
  let at = 0;
  for (const body of bodies) {
    lines.set(body, at);
    at += body.length;
    if (at < lines.length) lines[at++] = 0x0a;
  }
  return lines;
}
