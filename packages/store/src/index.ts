export type {
  ArbiterStore,
  DecisionBatch,
  DecisionFilter,
  DecisionLog,
  Follower,
  RuleEventStore,
  SnapshotStore,
  StoredDecision,
  StoredRuleEvent,
} from "./contracts.js";
export type { DecisionLine } from "./decision-batch.js";
export {
  decisionBatchFromTexts,
  isOneLine,
  maxDecisionRecordBytes,
  signDecisionBatch,
  splitDecisionBatches,
} from "./decision-batch.js";
export {
  ChainBrokenError,
  isChainBrokenError,
  isRevisionNotFoundError,
  isRuleConflictError,
  isStoreUnavailableError,
  RevisionNotFoundError,
  RuleConflictError,
  StoreUnavailableError,
} from "./errors.js";
export { JetStreamStoreOptions, openJetStreamStore } from "./jetstream-store.js";
export { createMemoryStore } from "./memory-store.js";
export type { ReplayGuard } from "./replay-guard.js";
export {
  createMemoryReplayGuard,
  DEFAULT_REPLAY_WINDOW_MS,
  openJetStreamReplayGuard,
  ReplayGuardOptions,
} from "./replay-guard.js";
export type {
  AppliedRules,
  ChangeOptions,
  RuleHistoryEntry,
  RulesAdmin,
  RulesAdminOptions,
} from "./rules-admin.js";
export { createRulesAdmin, newDeploymentId } from "./rules-admin.js";
export type { DecisionVerification, EnrolledWorkers } from "./verify-decision.js";
export { verifyDecision } from "./verify-decision.js";
