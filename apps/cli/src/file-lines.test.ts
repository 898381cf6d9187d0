import { mkdtempSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { LineTooLongError, readFileLines } from "./file-lines.js";

const dir = mkdtempSync(join(tmpdir(), "arbiter-lines-"));

async function all(file: string, maxLineBytes: number): Promise<{ n: number; line: string }[]> {
  const out: { n: number; line: string }[] = [];
  for await (const l of readFileLines(file, maxLineBytes)) out.push(l);
  return out;
}

describe("readFileLines", () => {
  it("yields each line with its number, LF and CRLF alike, a last line without a newline too", async () => {
    const file = join(dir, "plain.txt");
    writeFileSync(file, "one\r\ntwo\n\nfünf\n\u2028six");
    expect(await all(file, 64)).toEqual([
      { n: 1, line: "one" },
      { n: 2, line: "two" },
      { n: 3, line: "" },
      { n: 4, line: "fünf" },
      { n: 5, line: "\u2028six" },
    ]);
  });

  it("splits lines across read chunks, multi-byte characters included", async () => {
    const file = join(dir, "chunks.txt");
    const long = "é".repeat(100_000);
    writeFileSync(file, `${long}\n${long}x\n`);
    expect(await all(file, 300_000)).toEqual([
      { n: 1, line: long },
      { n: 2, line: `${long}x` },
    ]);
  });

  it("stops at a line longer than the bound, naming it, without holding it", async () => {
    const file = join(dir, "long.txt");
    writeFileSync(file, `short\n${"x".repeat(65)}\nafter\n`);
    const seen: number[] = [];
    const read = async () => {
      for await (const { n } of readFileLines(file, 64)) seen.push(n);
    };
    await expect(read()).rejects.toThrow(LineTooLongError);
    await expect(read()).rejects.toThrow("line 2 is longer than 64 bytes");
    expect(seen).toEqual([1, 1]);
    writeFileSync(file, "x".repeat(64));
    expect(await all(file, 64)).toEqual([{ n: 1, line: "x".repeat(64) }]);
  });

  it("reads a sparse file of 2 GiB with no newline only up to the bound", async () => {
    const file = join(dir, "sparse.bin");
    writeFileSync(file, "head\n");
    truncateSync(file, 2 ** 31);
    await expect(all(file, 1 << 20)).rejects.toThrow("line 2 is longer than 1048576 bytes");
  });

  it("rejects with the file system's error for a file that cannot be read", async () => {
    await expect(all(join(dir, "none.txt"), 64)).rejects.toThrow(/ENOENT/);
  });
});
