import { accessSync, constants, statSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { ArbiterError, ErrorCode } from "@arbiter/protocol";

/**
 * Throws INVALID_CONFIG, naming `flag` and `path`, when `path` is a folder or a file in a folder
 * that is missing or not writable: checked before a command reads for minutes and then cannot
 * write what it read. Creates nothing.
 */
export function checkWritableFile(path: string, flag: string, what: string): void {
  const full = resolve(path);
  const refuse = (why: string, cause?: unknown) =>
    new ArbiterError(
      ErrorCode.InvalidConfig,
      `${flag} ${path}: cannot write ${what}: ${why}`,
      cause === undefined ? undefined : { cause },
    );
  if (statSync(full, { throwIfNoEntry: false })?.isDirectory()) throw refuse("it is a folder");
  try {
    accessSync(dirname(full), constants.W_OK);
  } catch (err) {
    throw refuse((err as Error).message, err);
  }
}
