export type { DecodedJwt, MalformedJwt } from "./compact-jwt.js";
export { decodeJwt, encodeJwt, isDecodedJwt, verifyJwtSignature } from "./compact-jwt.js";
export type {
  ClaimsSectionName,
  ComponentClaimsInput,
  ComponentClaimsReason,
  ComponentClaimsReasonCode,
  ComponentInspection,
  InspectComponentOptions,
  SignedComponent,
} from "./component-claims.js";
export {
  CLAIMS_SECTION_NAMES,
  ComponentClaimsV1,
  ComponentMetadataV1,
  epochSecondsText,
  inspectComponent,
  moduleHash,
  policyRequestClaims,
  signComponent,
  WASCAP_REVISION,
} from "./component-claims.js";
export { entityUrl, targetUrl, WasmcloudEntity } from "./entity-url.js";
export type { ParsedInvocation } from "./invocation.js";
export { encodeInvocationMsgpack, InvocationV1, invocationToJson, parseInvocation } from "./invocation.js";
export { invocationHash } from "./invocation-hash.js";
export { MerkleThread } from "./merkle-thread.js";
export type { KeyRole } from "./nkey-codec.js";
export {
  decodePublicKey,
  decodeSeed,
  encodePublicKey,
  encodeSeed,
  InvalidKeyError,
  isInvalidKeyError,
  KeyPrefix,
} from "./nkey-codec.js";
export type { PolicyRequestSubject } from "./policy-invocation.js";
export {
  HOST_CONTRACT,
  HOST_LINK_NAME,
  hostEntity,
  POLICY_INVOCATION_HEADER,
  POLICY_SERVICE_CONTRACT,
  policyRequestInvocation,
  policyServiceEntity,
  signPolicyRequest,
} from "./policy-invocation.js";
export type { InclusionProof } from "./sealed-batch.js";
export {
  batchSeals,
  sealBatch,
  sealedSignedMessage,
  signBatch,
  signBatchRoot,
  splitSealedJson,
  verifyBatch,
  verifySealedJson,
} from "./sealed-batch.js";
export type { SignedJsonParts } from "./signed-json.js";
export { signJson, splitSignedJson, verifySignedJson } from "./signed-json.js";
export type { GeneratedKey, Signer } from "./signing.js";
export { createSigner, generateKey, verifySignature } from "./signing.js";
export type {
  InvocationTokenOptions,
  InvocationVerification,
  TrustProblem,
  VerifyInvocationOptions,
} from "./verify-invocation.js";
export {
  INVOCATION_JWT_HEADER,
  InvocationClaims,
  InvocationReason,
  signInvocation,
  signInvocationClaims,
  verifyInvocation,
} from "./verify-invocation.js";
export type { WasmBinary, WasmEncoding, WasmSection } from "./wasm-sections.js";
export {
  encodeVarU32,
  isMalformedWasmError,
  MAX_WASM_BYTES,
  MalformedWasmError,
  parseWasm,
  readVarU32,
} from "./wasm-sections.js";
