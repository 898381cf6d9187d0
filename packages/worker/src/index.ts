export type { ParsedWorkerConfig } from "./config.js";
export { isInboxReply, parseWorkerConfig, WorkerConfig } from "./config.js";
export type { DecidingWorker } from "./decide.js";
export {
  decideRequest,
  decisionRecord,
  encodeDecisionRecord,
  rejectionRecord,
  UNVERIFIED,
} from "./decide.js";
export type { TrustResult } from "./request-signatures.js";
export { RequestTrustReason } from "./request-signatures.js";
export type { Worker, WorkerDeps, WorkerHealth, WorkerStats, WorkerStatus } from "./worker.js";
export { createWorker } from "./worker.js";
