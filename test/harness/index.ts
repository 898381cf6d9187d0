export type {
  NatsCluster,
  NatsClusterOptions,
  NatsServerOptions,
  NatsServerProcess,
} from "@arbiter/embedded-nats";
export { startNatsCluster, startNatsServer } from "@arbiter/embedded-nats";
export { connectTo } from "./connect-to.js";
export type { Truthy, UntilOptions } from "./until.js";
export { UntilTimeoutError, until } from "./until.js";
