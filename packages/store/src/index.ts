export type { ActiveEntryId, ActiveIndex } from "./active-index.js";
export {
  ActiveIndexOptions,
  activeEntryKey,
  createMemoryActiveIndex,
  openJetStreamActiveIndex,
} from "./active-index.js";
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
  BATCH_SIGNATURE_HEADER,
  decisionBatchFromTexts,
  isOneLine,
  maxDecisionRecordBytes,
  sealedDecisionTexts,
  signDecisionBatch,
  splitDecisionBatches,
} from "./decision-batch.js";
export type { DurableFeed, DurableFeedOptions, FeedMessage } from "./durable-feed.js";
export { openDurableFeed } from "./durable-feed.js";
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
export type { RevocationFilter, RevocationLog, StoredRevocation } from "./revocation-log.js";
export { createMemoryRevocationLog, openJetStreamRevocationLog } from "./revocation-log.js";
export type {
  AppliedRules,
  ChangeOptions,
  RuleHistoryEntry,
  RulesAdmin,
  RulesAdminOptions,
} from "./rules-admin.js";
export { createRulesAdmin, newDeploymentId } from "./rules-admin.js";
export type { ScanParts } from "./scan-parts.js";
export { openJetStreamScanParts, scanDoneSubject, scanPartSubject } from "./scan-parts.js";
export type { DecisionBatchVerification, DecisionVerification, EnrolledWorkers } from "./verify-decision.js";
export { verifyDecision, verifyDecisionBatch } from "./verify-decision.js";
