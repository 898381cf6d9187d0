export type { ActiveEntryId, ActiveIndex, RequestIdClaimant, StoredHostRecord } from "./active-index.js";
export {
  ActiveIndexOptions,
  activeBucketOptions,
  activeEntryKey,
  createMemoryActiveIndex,
  hostRecordKey,
  openJetStreamActiveIndex,
} from "./active-index.js";
export type { AuditedDecision, AuditWindow } from "./audit-read.js";
export { auditDecisionText, decisionReadFilter, foldRuleEvents, readDecisionWindow } from "./audit-read.js";
export type {
  DecisionBounds,
  TrailFailure,
  TrailReport,
  TrailVerifier,
  TrailVerifierOptions,
} from "./audit-trail.js";
export { createTrailVerifier } from "./audit-trail.js";
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
  BATCH_CAUSE_HEADER,
  BATCH_SIGNATURE_HEADER,
  decisionBatchFromTexts,
  decisionTexts,
  type FramedDecisionBatch,
  frameDecisionBatches,
  isOneLine,
  maxDecisionRecordBytes,
  type PiecedDecision,
  REEVALUATION_BATCH_CAUSE,
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
export type { ArmOutcome } from "./expiry-timers.js";
export {
  EXPIRY_MAX_ACK_PENDING,
  expiryTimerArmer,
  expiryTimerSubject,
  parseExpiryTimer,
} from "./expiry-timers.js";
export type {
  IndexMirror,
  IndexMirrorOptions,
  IndexMirrorStats,
  MirrorUnavailable,
  MirrorView,
} from "./index-mirror.js";
export { DEFAULT_MIRROR_MAX_BYTES, DEFAULT_MIRROR_MAX_KEYS, openIndexMirror } from "./index-mirror.js";
export type { RetentionChange } from "./jetstream-store.js";
export { DecisionsRetention, JetStreamStoreOptions, openJetStreamStore } from "./jetstream-store.js";
export { createMemoryStore } from "./memory-store.js";
export type { ReplayGuard } from "./replay-guard.js";
export {
  createMemoryReplayGuard,
  DEFAULT_REPLAY_WINDOW_MS,
  openJetStreamReplayGuard,
  ReplayGuardOptions,
} from "./replay-guard.js";
export { connectionInboxPrefix } from "./reply-mux.js";
export type {
  AppendedRevocations,
  MemoryRevocationLog,
  RevocationEntry,
  RevocationFilter,
  RevocationLog,
  StoredRevocation,
} from "./revocation-log.js";
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
export type { TrailExportLine } from "./trail-export.js";
export {
  decisionLine,
  parseTrailLine,
  retentionLine,
  ruleEventLine,
  TRAIL_EXPORT_FORMAT,
  TrailExportHeader,
  trailHeaderLine,
} from "./trail-export.js";
export type { TrailMessage, TrailSource, TrailStreamBounds } from "./trail-read.js";
export { openTrailSource } from "./trail-read.js";
export type { DecisionBatchVerification, DecisionVerification, EnrolledWorkers } from "./verify-decision.js";
export { verifyDecision, verifyDecisionBatch } from "./verify-decision.js";
