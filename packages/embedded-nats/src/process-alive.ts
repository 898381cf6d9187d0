import { readFileSync } from "node:fs";

/**
 * True while the process `pid` runs. A zombie (exited, not yet reaped by its parent) counts as
 * gone, since a detached nats-server whose `arbiter up` was killed lingers as one. Never throws.
 */
export function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    // The state follows the parenthesised command name in /proc/<pid>/stat.
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return true;
  }
}
