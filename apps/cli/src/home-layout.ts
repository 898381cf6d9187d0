import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { ArbiterError, ErrorCode } from "@arbiter/protocol";

/** How an `arbiter up` runs its NATS, which decides where in ARBITER_HOME its streams are kept. */
export interface UpLayout {
  /** 1 (`nats/`) or 3 (`nats-cluster/n1..n3`). */
  readonly nodes: 1 | 3;
  /** `--secure`: the streams belong to the operator's accounts, not to the global account. */
  readonly secure: boolean;
}

const LAYOUTS: readonly UpLayout[] = [
  { nodes: 1, secure: false },
  { nodes: 1, secure: true },
  { nodes: 3, secure: false },
  { nodes: 3, secure: true },
];

/** nats-server keeps an open server's streams in `$G` and its own raft state in `$SYS`. */
const GLOBAL_ACCOUNT = "$G";
const SYSTEM_ACCOUNT = "$SYS";

/**
 * Refuses an `arbiter up` whose layout finds no streams in `home` while another layout's are
 * there: its NATS would start empty beside them, and `up` would write a new deployment with the
 * example rules as if no rules had ever been applied. Throws INVALID_CONFIG naming the flags that
 * find them; returns when this layout holds data, or none does.
 */
export function checkHomeLayout(home: string, layout: UpLayout): void {
  if (holdsStreams(home, layout)) return;
  const other = LAYOUTS.find((candidate) => !sameLayout(candidate, layout) && holdsStreams(home, candidate));
  if (other === undefined) return;
  throw new ArbiterError(
    ErrorCode.InvalidConfig,
    `ARBITER_HOME ${home} holds the streams of an \`arbiter up${flagsOf(other)}\` (${describe(other)}), which this \`arbiter up${flagsOf(layout)}\` (${describe(layout)}) cannot see: it would start a new deployment beside them. Run \`arbiter up${flagsOf(other)}\` to keep them, or set ARBITER_HOME to another folder`,
  );
}

function holdsStreams(home: string, layout: UpLayout): boolean {
  const jetstream =
    layout.nodes === 1 ? join(home, "nats", "jetstream") : join(home, "nats-cluster", "n1", "jetstream");
  if (!existsSync(jetstream)) return false;
  const accounts = readdirSync(jetstream).filter((name) =>
    layout.secure ? name !== GLOBAL_ACCOUNT && name !== SYSTEM_ACCOUNT : name === GLOBAL_ACCOUNT,
  );
  return accounts.some((account) => {
    const streams = join(jetstream, account, "streams");
    return existsSync(streams) && readdirSync(streams).length > 0;
  });
}

function sameLayout(a: UpLayout, b: UpLayout): boolean {
  return a.nodes === b.nodes && a.secure === b.secure;
}

function flagsOf(layout: UpLayout): string {
  return `${layout.nodes === 3 ? " --nodes 3" : ""}${layout.secure ? " --secure" : ""}`;
}

function describe(layout: UpLayout): string {
  return `${layout.nodes === 3 ? "three nodes" : "one node"}, ${layout.secure ? "operator-mode accounts" : "open"}`;
}
