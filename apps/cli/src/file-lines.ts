import { createReadStream } from "node:fs";

/** Thrown by {@link readFileLines} at a line longer than its bound, which it does not read further. */
export class LineTooLongError extends Error {
  constructor(
    readonly line: number,
    readonly maxLineBytes: number,
  ) {
    super(`line ${line} is longer than ${maxLineBytes} bytes`);
    this.name = "LineTooLongError";
  }
}

const NEWLINE = 0x0a;
const RETURN = 0x0d;

/**
 * The lines of `file` (LF or CRLF; a last line without a newline too), each with its number from
 * 1, decoded as UTF-8, holding at most one line of at most `maxLineBytes` bytes in memory: at a
 * longer one it stops reading and rejects with {@link LineTooLongError}, so a file of one line
 * of gigabytes costs no more than the bound. Rejects with the file system's error when the file
 * cannot be read.
 */
export async function* readFileLines(
  file: string,
  maxLineBytes: number,
): AsyncGenerator<{ n: number; line: string }> {
  const input = createReadStream(file);
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  let n = 0;
  const take = (tail: Buffer): string => {
    const bytes = pending.length === 0 ? tail : Buffer.concat([...pending, tail]);
    pending = [];
    pendingBytes = 0;
    const end = bytes.length > 0 && bytes[bytes.length - 1] === RETURN ? bytes.length - 1 : bytes.length;
    return bytes.toString("utf8", 0, end);
  };
  try {
    for await (const chunk of input) {
      const bytes = chunk as Buffer;
      let start = 0;
      for (;;) {
        const at = bytes.indexOf(NEWLINE, start);
        const part = at === -1 ? bytes.subarray(start) : bytes.subarray(start, at);
        // A CR before the newline is not part of the line.
        const last = part.length > 0 ? part.at(-1) : pending.at(-1)?.at(-1);
        const counted = pendingBytes + part.length - (at !== -1 && last === RETURN ? 1 : 0);
        if (counted > maxLineBytes && (at !== -1 || counted > maxLineBytes + 1)) {
          throw new LineTooLongError(n + 1, maxLineBytes);
        }
        if (at === -1) {
          if (part.length > 0) {
            pending.push(Buffer.from(part));
            pendingBytes += part.length;
          }
          break;
        }
        n++;
        yield { n, line: take(part) };
        start = at + 1;
      }
    }
    if (pendingBytes > maxLineBytes) throw new LineTooLongError(n + 1, maxLineBytes);
    if (pendingBytes > 0) {
      n++;
      yield { n, line: take(Buffer.alloc(0)) };
    }
  } finally {
    input.destroy();
  }
}
