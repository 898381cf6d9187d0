import { randomBytes } from "node:crypto";
import type { DistributiveOmit, RuleEventType, UnsignedRuleEventV1 } from "@arbiter/protocol";
import { ArbiterError, ErrorCode, RuleEventV1, WorkerPublicKey } from "@arbiter/protocol";
import {
  compileRules,
  evolveRuleset,
  initialRulesetState,
  type RulesDocumentInput,
  type RulesetState,
  type RulesetTrust,
  restoreSnapshot,
  ruleEventHash,
  signSnapshot,
  snapshotHeadMatches,
  validateRulesDocument,
} from "@arbiter/rules";
import { decodePublicKey, type Signer, signJson } from "@arbiter/trust";
import { ulid } from "ulid";
import type { ArbiterStore } from "./contracts.js";
import { ChainBrokenError, RevisionNotFoundError, RuleConflictError } from "./errors.js";
import { parseJsonOrNull } from "./text.js";

/** One line of the rules history: an event, whether workers apply it, and how it chains. */
export interface RuleHistoryEntry {
  readonly revision: number;
  readonly type: RuleEventType | null;
  readonly eventId: string | null;
  readonly actor: string | null;
  readonly at: string | null;
  readonly reason: string | null;
  /** The deployment the event names. */
  readonly deployment: string | null;
  /** SHA-256 (hex) of the event as stored: what the next event names as `prev`. */
  readonly hash: string;
  /** The hash the event names for the event before it (null for the genesis event). */
  readonly prev: string | null;
  readonly applied: boolean;
  /** Why workers skip the event (bad signature, unknown admin, invalid rules, …). */
  readonly rejection: string | null;
  /** Set on the first event that does not chain: why (another deployment, a wrong prev, …). */
  readonly broken: string | null;
}

/** The result of a successful change of the rules. */
export interface AppliedRules {
  readonly revision: number;
  readonly eventId: string;
  /** The SHA-256 (hex) of the event as stored: what the next event names as `prev`, and scan reports as `event`. */
  readonly eventHash: string;
  /** The deployment the rules belong to (created with the genesis event on an empty stream). */
  readonly deployment: string;
  /** Whether the KV snapshot was brought up to this revision (workers start faster). */
  readonly snapshot: "saved" | { readonly failed: string };
}

/** Options of a change: the revision it must follow, and why. */
export interface ChangeOptions {
  readonly expectedRevision?: number;
  readonly reason?: string;
  /**
   * Called with the new revision once the rules stream has acknowledged its event, before the
   * snapshot is written: the moment workers can start folding it (a benchmark's clock starts here).
   */
  readonly onAppended?: (revision: number) => void;
}

/** Signs and appends rule events, and reads the rules at any revision. */
export interface RulesAdmin {
  /**
   * Replaces the whole ruleset (writing the genesis event first on an empty stream); throws
   * `InvalidRulesError` before writing anything, `RuleConflictError` when stale, and
   * `ChainBrokenError` when the history does not chain.
   */
  apply(document: RulesDocumentInput, options?: ChangeOptions): Promise<AppliedRules>;
  /** Restores the document of an earlier revision, as a new event; throws `RevisionNotFoundError` (naming the latest) outside 1…latest. */
  rollback(to: number, options?: ChangeOptions): Promise<AppliedRules>;
  /** Writes the genesis event if the stream is empty; resolves with the deployment id either way. */
  ensureDeployment(): Promise<string>;
  /** Enrolls a worker public key (`N…`): decisions it signs verify from this revision on. */
  enrollWorker(publicKey: string, options?: ChangeOptions & { name?: string }): Promise<AppliedRules>;
  /** Removes a worker key: decisions it signs at later revisions no longer verify. */
  removeWorker(publicKey: string, options?: ChangeOptions): Promise<AppliedRules>;
  /** The folded rules at `revision` (default: latest); throws `RevisionNotFoundError` past the end. */
  stateAt(revision?: number): Promise<RulesetState>;
  /** Every event with its fate and its links. */
  history(): Promise<RuleHistoryEntry[]>;
  /**
   * Whether the snapshot's head is in the stream: null when it is (or there is no snapshot of
   * this deployment), else why not (the stream was deleted and refilled, or has lost events).
   */
  snapshotProblem(): Promise<string | null>;
}

/** Options of {@link createRulesAdmin}. */
export interface RulesAdminOptions {
  readonly store: ArbiterStore;
  /** The admin key that signs new events (an `O…` operator key); reading needs none. */
  readonly signer?: Signer;
  /** Keys whose events count when folding; the signer's own key is always included. */
  readonly adminKeys?: Iterable<string>;
  readonly clock?: () => Date;
}

/** A new deployment id: 128 random bits in base32 (RFC 4648 alphabet, no padding), 26 characters. */
export function newDeploymentId(): string {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  const bytes = randomBytes(16);
  let bits = 0;
  let value = 0;
  let out = "";
  for (const byte of bytes) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += alphabet[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
    value &= (1 << bits) - 1;
  }
  return out + alphabet[(value << (5 - bits)) & 31];
}

type ChangeEvent = DistributiveOmit<
  Exclude<UnsignedRuleEventV1, { type: "deployment.created" }>,
  "eventId" | "at" | "actor" | "previous" | "deployment" | "prev" | "reason"
>;

/** Creates the rules administration used by `arbiter rules …` and `arbiter workers …`. */
export function createRulesAdmin(options: RulesAdminOptions): RulesAdmin {
  const { store } = options;
  const clock = options.clock ?? (() => new Date());
  const ownKey = options.signer ? [options.signer.publicKey] : [];
  const trust: RulesetTrust = { adminKeys: new Set([...(options.adminKeys ?? []), ...ownKey]) };

  async function fold(to?: number): Promise<{ state: RulesetState; history: RuleHistoryEntry[] }> {
    let state = initialRulesetState();
    const history: RuleHistoryEntry[] = [];
    for await (const stored of store.rules.read(to === undefined ? {} : { to })) {
      const result = evolveRuleset(state, stored, trust);
      state = result.state;
      const event = RuleEventV1.safeParse(parseJsonOrNull(stored.text));
      const data = event.success ? event.data : null;
      history.push({
        revision: stored.revision,
        type: data?.type ?? null,
        eventId: data?.eventId ?? null,
        actor: data?.actor ?? null,
        at: data?.at ?? null,
        reason: data?.reason ?? null,
        deployment: data?.deployment ?? null,
        hash: ruleEventHash(stored.text),
        prev: data?.prev ?? null,
        applied: result.outcome.applied,
        rejection: result.outcome.applied ? null : result.outcome.reason,
        broken: !result.outcome.applied && result.outcome.breaksChain ? result.outcome.reason : null,
      });
    }
    return { state, history };
  }

  function requireSigner(): Signer {
    if (!options.signer)
      throw new ArbiterError(ErrorCode.InvalidConfig, "changing the rules needs an admin key to sign with");
    return options.signer;
  }

  async function snapshotProblem(state: RulesetState): Promise<string | null> {
    const text = await store.snapshots.load();
    if (text === null) return null;
    const restored = restoreSnapshot(text, trust);
    // A snapshot this reader cannot trust, or of another deployment, is replaced by the next write.
    if (!restored.ok || restored.state.deployment !== state.deployment) return null;
    return snapshotHeadMatches(restored.state, await store.rules.get(restored.state.revision));
  }

  /** The folded history a writer appends to, refusing one that does not chain. */
  async function writable(expected: number | undefined): Promise<RulesetState> {
    const { state } = await fold();
    if (expected !== undefined && expected !== state.revision) {
      throw new RuleConflictError(expected, state.revision);
    }
    if (state.broken !== null) {
      throw new ChainBrokenError(
        `the rules history stops chaining at revision ${state.broken.revision} (${state.broken.reason}); nothing was written. See \`arbiter rules history\`; restore the stream, or start a new deployment on an empty rules stream`,
        state.broken.revision,
      );
    }
    if (state.revision > 0 && state.deployment === null) {
      const first = RuleEventV1.safeParse(parseJsonOrNull((await store.rules.get(1))?.text ?? ""));
      if (
        first.success &&
        first.data.type === "deployment.created" &&
        !trust.adminKeys.has(first.data.actor)
      ) {
        throw new ArbiterError(
          ErrorCode.AdminKeyNotAccepted,
          `the genesis event of deployment ${first.data.deployment} is signed by ${first.data.actor}, which is not among the admin keys this writer accepts (${[...trust.adminKeys].join(", ")}); add it to ARBITER_ADMIN_KEYS to chain onto its history. Nothing was written`,
        );
      }
      throw new ChainBrokenError(
        `the rules stream has ${state.revision} event(s) but no genesis event at revision 1 (written by an earlier Arbiter?); nothing was written. Delete the rules stream and the rules snapshot and apply the rules again`,
        1,
      );
    }
    const problem = await snapshotProblem(state);
    if (problem !== null) {
      throw new ChainBrokenError(
        `${problem}: the rules stream was deleted and refilled, or lost events; nothing was written`,
        state.revision,
      );
    }
    return state;
  }

  /** Writes the genesis event at revision 1; the stream must be empty. */
  async function genesis(signer: Signer): Promise<RulesetState> {
    const unsigned: UnsignedRuleEventV1 = {
      type: "deployment.created",
      eventId: ulid(),
      at: clock().toISOString(),
      actor: signer.publicKey,
      reason: "a new deployment",
      previous: 0,
      deployment: newDeploymentId(),
      prev: null,
      payload: {},
    };
    const text = signJson(unsigned, signer);
    await store.rules.append(text, 0);
    const result = evolveRuleset(initialRulesetState(), { revision: 1, text }, trust);
    return result.state;
  }

  async function append(change: ChangeEvent, opts: ChangeOptions): Promise<AppliedRules> {
    const signer = requireSigner();
    let state = await writable(opts.expectedRevision);
    if (state.revision === 0) state = await genesis(signer);
    const unsigned: UnsignedRuleEventV1 = {
      ...change,
      eventId: ulid(),
      at: clock().toISOString(),
      actor: signer.publicKey,
      ...(opts.reason === undefined ? {} : { reason: opts.reason }),
      previous: state.revision,
      deployment: state.deployment!,
      prev: state.head,
    };
    const text = signJson(unsigned, signer);
    const revision = await store.rules.append(text, state.revision);
    opts.onAppended?.(revision);
    let snapshot: AppliedRules["snapshot"] = "saved";
    try {
      const { state: after } = await fold(revision);
      await store.snapshots.save(signSnapshot(after, signer, clock()), revision);
    } catch (err) {
      snapshot = { failed: err instanceof Error ? err.message : String(err) };
    }
    return {
      revision,
      eventId: unsigned.eventId,
      eventHash: ruleEventHash(text),
      deployment: state.deployment!,
      snapshot,
    };
  }

  function workerKey(publicKey: string): string {
    const parsed = WorkerPublicKey.safeParse(publicKey);
    if (!parsed.success) {
      throw new ArbiterError(
        ErrorCode.InvalidKey,
        `${JSON.stringify(publicKey)} is not a worker public key: expected an nkeys host key (N…, 56 characters)`,
      );
    }
    decodePublicKey(publicKey, "N");
    return publicKey;
  }

  return {
    async apply(document, opts = {}) {
      const valid = validateRulesDocument(document);
      compileRules(valid);
      return append({ type: "ruleset.replaced", payload: { document: valid } }, opts);
    },

    async rollback(to, opts = {}) {
      const latest = await store.rules.lastRevision();
      if (to < 1 || to > latest) throw new RevisionNotFoundError(to, latest);
      const state = await this.stateAt(to);
      if (state.document === null) {
        throw new ArbiterError(
          ErrorCode.RevisionNotFound,
          `revision ${to} has no rules to restore (no event up to it was applied); the latest revision is ${latest}`,
        );
      }
      return append(
        { type: "ruleset.replaced", payload: { document: state.document } },
        { ...opts, reason: opts.reason ?? `rollback to revision ${to}` },
      );
    },

    async ensureDeployment() {
      const state = await writable(undefined);
      if (state.deployment !== null) return state.deployment;
      return (await genesis(requireSigner())).deployment!;
    },

    enrollWorker: async (publicKey, opts = {}) =>
      append(
        {
          type: "worker.enrolled",
          payload: { publicKey: workerKey(publicKey), ...(opts.name ? { name: opts.name } : {}) },
        },
        opts,
      ),

    removeWorker: async (publicKey, opts = {}) =>
      append({ type: "worker.removed", payload: { publicKey: workerKey(publicKey) } }, opts),

    async stateAt(revision) {
      const latest = await store.rules.lastRevision();
      if (revision !== undefined && (revision < 0 || revision > latest))
        throw new RevisionNotFoundError(revision, latest);
      return (await fold(revision ?? latest)).state;
    },

    async history() {
      return (await fold()).history;
    },

    async snapshotProblem() {
      return snapshotProblem((await fold()).state);
    },
  };
}
