export type { DecidingWorker, TrustResult } from "./decide.js";
export { decideRequest, decisionRecord, rejectionRecord, UNVERIFIED } from "./decide.js";
export type { Worker, WorkerDeps, WorkerStats, WorkerStatus } from "./worker.js";
export { createWorker, parseWorkerConfig, WorkerConfig } from "./worker.js";
