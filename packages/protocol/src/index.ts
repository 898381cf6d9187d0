export type { DuplicateKey } from "./duplicate-keys.js";
export { countWrittenKeys, findDuplicateKey } from "./duplicate-keys.js";
export { ArbiterError, ErrorCode, isArbiterError, toArbiterError } from "./errors.js";
export { ExpiryTimerV1 } from "./expiry-timer.js";
export type {
  HostLifecycleEvent,
  HostLifecycleEventName,
  ParsedLatticeEvent,
} from "./lattice-events.js";
export {
  HOST_LIFECYCLE_EVENTS,
  HostHeartbeatDataV1,
  HostPingAnswerV1,
  HostRecordV1,
  HostStartedDataV1,
  HostStoppedDataV1,
  LATTICE_EVENT_TYPE_PREFIX,
  LatticeCloudEventV1,
  MAX_LATTICE_EVENT_BYTES,
  parseLatticeEvent,
  pingAnswerHost,
} from "./lattice-events.js";
export type { ResourceNames } from "./names.js";
export {
  ADMIN_INBOX_PREFIX,
  DEFAULT_CHANGES_TOPIC,
  DEFAULT_POLICY_TOPIC,
  DEFAULT_PREFIX,
  DEFAULT_QUEUE_GROUP,
  resourceNames,
  WORKER_INBOX_PREFIX,
} from "./names.js";
export type { DecodedRequest, DecodeLimits, Lineage, NormalizedRequest } from "./policy-request.js";
export {
  cacheKeyV1,
  cacheKeyV082,
  decodePolicyRequest,
  decodePolicyValue,
  formatIssues,
  isByteLevelRejection,
  normalizeV1,
  normalizeV082,
} from "./policy-request.js";
export type { DistributiveOmit, UnsignedDecisionV1, UnsignedRuleEventV1 } from "./records.js";
export {
  ActiveDecisionV1,
  AdminPublicKey,
  ChainHash,
  DecisionCause,
  DecisionV1,
  DeploymentId,
  PolicyOverrideV1,
  RevocationBatchV1,
  RevocationV1,
  RuleErrorV1,
  RuleEventType,
  RuleEventV1,
  RulesSnapshotV1,
  WorkerEnrollmentV1,
  WorkerPublicKey,
} from "./records.js";
export { ScanPartDoneV1, ScanPartV1 } from "./scan-parts.js";
export { ScanReportV1 } from "./scan-report.js";
export {
  ClaimsV1,
  HostInfoV1,
  LegacyActionV082,
  LegacyHostV082,
  LegacySourceV082,
  LegacyTargetV082,
  PerformInvocationBodyV1,
  PolicyRequestV1,
  PolicyRequestV082,
  PolicyResponseV1,
  RequestKindV1,
  StartComponentBodyV1,
  StartProviderBodyV1,
} from "./wasmcloud.js";
export { LifecycleState, WorkerStatusV1 } from "./worker-status.js";
