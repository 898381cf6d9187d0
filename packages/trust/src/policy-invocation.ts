import type { WasmcloudEntity } from "./entity-url.js";
import type { InvocationV1 } from "./invocation.js";
import type { Signer } from "./signing.js";
import { type InvocationTokenOptions, signInvocationClaims } from "./verify-invocation.js";

// A policy request signed as a zero-trust invocation: origin the asking host, target the
// lattice's policy service on its topic, operation the request kind, msg the exact request bytes.
// Only the claims token travels (in a NATS header); the rest of the invocation is the request.

/** The NATS header that carries a policy request's invocation claims token (a compact JWT). */
export const POLICY_INVOCATION_HEADER = "Wasmcloud-Invocation";
/** Contract id of the policy service as an invocation target. */
export const POLICY_SERVICE_CONTRACT = "wasmcloud:policy";
/** Contract id of a host as an invocation origin. */
export const HOST_CONTRACT = "wasmcloud:host";
/** Link name of a host as an invocation origin (wasmCloud's default link name). */
export const HOST_LINK_NAME = "default";

/** What a signed policy request is about. */
export interface PolicyRequestSubject {
  /** The asking host's public key (`host.publicKey` in the request). */
  readonly hostKey: string;
  /** The lattice (`host.lattice`). */
  readonly lattice: string;
  /** The policy topic the request is published on. */
  readonly policyTopic: string;
  /** The request `kind` (the operation). */
  readonly kind: string;
  /** The request exactly as published. */
  readonly request: Uint8Array;
}

/** The origin of a host's policy request: `wasmbus://wasmcloud/host/default/{host key}`. */
export function hostEntity(hostKey: string): WasmcloudEntity {
  return { public_key: hostKey, contract_id: HOST_CONTRACT, link_name: HOST_LINK_NAME };
}

/**
 * The policy service of `lattice` on `policyTopic`: public key `"{topic} {lattice}"`, so that
 * `wasmbus://wasmcloud/policy/default/{topic} {lattice}`. Both live in the key, which entity URLs
 * keep as written: link names are lowercased, and a key starting with `M` drops the contract and
 * link name. A NATS subject holds no space, so the first space splits the two unambiguously.
 */
export function policyServiceEntity(policyTopic: string, lattice: string): WasmcloudEntity {
  return {
    public_key: `${policyTopic} ${lattice}`,
    contract_id: POLICY_SERVICE_CONTRACT,
    link_name: HOST_LINK_NAME,
  };
}

/** The invocation a policy request with the claims token `token` stands for, ready to verify. */
export function policyRequestInvocation(subject: PolicyRequestSubject, token: string): InvocationV1 {
  return {
    origin: hostEntity(subject.hostKey),
    target: policyServiceEntity(subject.policyTopic, subject.lattice),
    operation: subject.kind,
    msg: subject.request,
    id: "",
    encoded_claims: token,
    host_id: subject.hostKey,
  };
}

/** Signs a policy request with the cluster key `signer`: the value of {@link POLICY_INVOCATION_HEADER}. */
export function signPolicyRequest(
  subject: PolicyRequestSubject,
  signer: Signer,
  options: InvocationTokenOptions & { readonly id?: string } = {},
): string {
  const invocation = policyRequestInvocation(subject, "");
  return signInvocationClaims({ ...invocation, id: options.id ?? "" }, signer, options);
}
