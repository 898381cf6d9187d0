export {
  isNatsClusterFormationError,
  isNatsServerNotFoundError,
  isNatsServerStartError,
  NatsClusterFormationError,
  NatsServerNotFoundError,
  NatsServerStartError,
} from "./errors.js";
export type { FindNatsServerOptions } from "./find-nats-server.js";
export { findNatsServer } from "./find-nats-server.js";
export type { NatsCluster, NatsClusterOptions } from "./nats-cluster.js";
export { startNatsCluster } from "./nats-cluster.js";
export type { NatsServerClusterOptions, NatsServerOptions, NatsServerProcess } from "./nats-server.js";
export { startNatsServer } from "./nats-server.js";
export { isProcessAlive } from "./process-alive.js";
