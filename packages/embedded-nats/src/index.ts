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
export type { NatsIdentity, OperatorSetup } from "./nats-jwt.js";
export {
  createOperatorSetup,
  natsJwtId,
  renderCredsFile,
  renderOperatorConfig,
  signNatsClaims,
  userNatsClaims,
} from "./nats-jwt.js";
export type { NatsServerClusterOptions, NatsServerOptions, NatsServerProcess } from "./nats-server.js";
export { startNatsServer } from "./nats-server.js";
export type { NatsRole, PermissionOptions, RolePermissions } from "./permissions.js";
export {
  ADMIN_INBOX_PREFIX,
  ARBITER_ACCOUNT,
  accountLinks,
  HOST_INBOX_PREFIX,
  hostJetStreamLinks,
  LATTICE_ACCOUNT,
  LATTICE_JETSTREAM_ACCOUNT,
  latticeBucketStreams,
  latticeBuckets,
  NATS_ROLES,
  PASSWORD_USERS,
  ROLE_ACCOUNT,
  renderAccountsConfig,
  renderClusterNodeConfig,
  renderSingleNodeConfig,
  rolePermissions,
  SERVICE_IMPORT_REPLY_PREFIX,
  WORKER_INBOX_PREFIX,
  WORKER_REPLY_PREFIXES,
} from "./permissions.js";
export { isProcessAlive } from "./process-alive.js";
