import { createReadStream } from "node:fs";

/** Thrown by {@link readBounded} when the input holds more than it reads. */
export class InputTooLargeError extends Error {
  constructor(
    readonly source: string,
    readonly maxBytes: number,
  ) {
    super(`${source}: more than ${maxBytes} bytes; not read further`);
    this.name = "InputTooLargeError";
  }
}

/**
 * Reads `file` (or standard input for `-`) to its end, but never more than `maxBytes`: an input
 * that never ends (`/dev/zero`, a pipe from a generator) is refused with
 * {@link InputTooLargeError} instead of taking all memory. Rejects with the file system's error
 * when the file cannot be read.
 */
export async function readBounded(file: string, maxBytes: number): Promise<Buffer> {
  const source = file === "-" ? "standard input" : file;
  const stream = file === "-" ? process.stdin : createReadStream(file);
  const chunks: Buffer[] = [];
  let total = 0;
  try {
    for await (const chunk of stream) {
      const bytes = typeof chunk === "string" ? Buffer.from(chunk) : (chunk as Buffer);
      total += bytes.length;
      if (total > maxBytes)
        throw new InputTooLargeError(source === "standard input" ? source : file, maxBytes);
      chunks.push(bytes);
    }
  } finally {
    if (file !== "-") stream.destroy();
  }
  return Buffer.concat(chunks, total);
}
