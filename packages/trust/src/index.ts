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
  inspectComponent,
  moduleHash,
  policyRequestClaims,
  signComponent,
  WASCAP_REVISION,
} from "./component-claims.js";
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
export type { InclusionProof } from "./sealed-batch.js";
export { batchSeals, sealBatch, signBatch, splitSealedJson, verifySealedJson } from "./sealed-batch.js";
export type { SignedJsonParts } from "./signed-json.js";
export { signJson, splitSignedJson, verifySignedJson } from "./signed-json.js";
export type { GeneratedKey, Signer } from "./signing.js";
export { createSigner, generateKey, verifySignature } from "./signing.js";
export type { WasmBinary, WasmEncoding, WasmSection } from "./wasm-sections.js";
export {
  encodeVarU32,
  isMalformedWasmError,
  MalformedWasmError,
  parseWasm,
  readVarU32,
} from "./wasm-sections.js";
