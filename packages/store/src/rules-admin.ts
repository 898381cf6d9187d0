import type { RuleEventType, UnsignedRuleEventV1 } from "@arbiter/protocol";
import { ArbiterError, ErrorCode, RuleEventV1 } from "@arbiter/protocol";
import {
  compileRules,
  evolveRuleset,
  initialRulesetState,
  type RulesDocument,
  type RulesDocumentInput,
  type RulesetState,
  type RulesetTrust,
  signSnapshot,
  validateRulesDocument,
} from "@arbiter/rules";
import { type Signer, signJson } from "@arbiter/trust";
import { ulid } from "ulid";
import type { ArbiterStore } from "./contracts.js";
import { RevisionNotFoundError } from "./errors.js";
import { parseJsonOrNull } from "./text.js";

/** One line of the rules history: an event, and whether workers apply it. */
export interface RuleHistoryEntry {
  readonly revision: number;
  readonly type: RuleEventType | null;
  readonly eventId: string | null;
  readonly actor: string | null;
  readonly at: string | null;
  readonly reason: string | null;
  readonly applied: boolean;
  /** Why workers skip the event (bad signature, unknown admin, invalid rules, …). */
  readonly rejection: string | null;
}

/** The result of a successful change of the rules. */
export interface AppliedRules {
  readonly revision: number;
  readonly eventId: string;
  /** Whether the KV snapshot was brought up to this revision (workers start faster). */
  readonly snapshot: "saved" | { readonly failed: string };
}

/** Signs and appends rule events, and reads the rules at any revision. */
export interface RulesAdmin {
  /** Replaces the whole ruleset; throws `InvalidRulesError` before writing anything, `RuleConflictError` when stale. */
  apply(
    document: RulesDocumentInput,
    options?: { expectedRevision?: number; reason?: string },
  ): Promise<AppliedRules>;
  /** Restores the document of an earlier revision, as a new event; throws `RevisionNotFoundError` (naming the latest) outside 1…latest. */
  rollback(to: number, options?: { expectedRevision?: number; reason?: string }): Promise<AppliedRules>;
  /** The folded rules at `revision` (default: latest); throws `RevisionNotFoundError` past the end. */
  stateAt(revision?: number): Promise<RulesetState>;
  /** Every event with its fate. */
  history(): Promise<RuleHistoryEntry[]>;
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

/** Creates the rules administration used by `arbiter rules …`. */
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
      history.push({
        revision: stored.revision,
        type: event.success ? event.data.type : null,
        eventId: event.success ? event.data.eventId : null,
        actor: event.success ? event.data.actor : null,
        at: event.success ? event.data.at : null,
        reason: event.success ? (event.data.reason ?? null) : null,
        applied: result.outcome.applied,
        rejection: result.outcome.applied ? null : result.outcome.reason,
      });
    }
    return { state, history };
  }

  async function replace(
    document: RulesDocument,
    expected: number | undefined,
    reason?: string,
  ): Promise<AppliedRules> {
    const signer = options.signer;
    if (!signer)
      throw new ArbiterError(ErrorCode.InvalidConfig, "changing the rules needs an admin key to sign with");
    compileRules(document);
    const previous = expected ?? (await store.rules.lastRevision());
    const unsigned: UnsignedRuleEventV1 = {
      type: "ruleset.replaced",
      eventId: ulid(),
      at: clock().toISOString(),
      actor: signer.publicKey,
      ...(reason === undefined ? {} : { reason }),
      previous,
      payload: { document },
    };
    const revision = await store.rules.append(signJson(unsigned, signer), previous);
    let snapshot: AppliedRules["snapshot"] = "saved";
    try {
      const { state } = await fold(revision);
      await store.snapshots.save(signSnapshot(state, signer, clock()), revision);
    } catch (err) {
      snapshot = { failed: err instanceof Error ? err.message : String(err) };
    }
    return { revision, eventId: unsigned.eventId, snapshot };
  }

  return {
    apply: (document, opts = {}) =>
      replace(validateRulesDocument(document), opts.expectedRevision, opts.reason),

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
      return replace(state.document, opts.expectedRevision, opts.reason ?? `rollback to revision ${to}`);
    },

    async stateAt(revision) {
      const latest = await store.rules.lastRevision();
      if (revision !== undefined && (revision < 0 || revision > latest))
        throw new RevisionNotFoundError(revision, latest);
      return (await fold(revision ?? latest)).state;
    },

    async history() {
      return (await fold()).history;
    },
  };
}
