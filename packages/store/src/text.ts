import { z } from "zod";

/** Parses JSON from the network or the store; null when it is not JSON (the caller says why). */
export function parseJsonOrNull(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

/** The message of anything thrown. */
export function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

const SnapshotPosition = z.object({ revision: z.number().int().nonnegative(), deployment: z.string() });

/**
 * True when the stored snapshot text should stay instead of `text` at `revision`: it is of the
 * same deployment and at that revision or later. A snapshot of another deployment, or one that
 * cannot be read, gives way.
 */
export function keepsStoredSnapshot(stored: string, text: string, revision: number): boolean {
  const old = SnapshotPosition.safeParse(parseJsonOrNull(stored));
  const next = SnapshotPosition.safeParse(parseJsonOrNull(text));
  if (!old.success) return false;
  if (next.success && old.data.deployment !== next.data.deployment) return false;
  return old.data.revision >= revision;
}
