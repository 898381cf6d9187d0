export {
  HostClientStoppedError,
  HostConfigError,
  HostRequestError,
  isHostClientStoppedError,
  isHostConfigError,
  isHostRequestError,
} from "./errors.js";
export type {
  CacheEntry,
  HostPolicyClient,
  HostPolicyClientOptions,
  HostPolicyClientStatus,
  HostPolicyStats,
  OverrideEvent,
  PolicyAnswer,
  PolicyFailure,
} from "./host-policy-client.js";
export { createHostPolicyClient } from "./host-policy-client.js";
export type { LegacyRequestInput } from "./host-wire.js";
export type { LatticeHost, LatticeHostOptions } from "./lattice-host.js";
export { createLatticeHost, latticeEventJson } from "./lattice-host.js";
