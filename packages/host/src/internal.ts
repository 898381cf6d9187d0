// For sibling packages and tests only: the byte-level pieces of the host client, so a test can
// build exactly what a host would send without a NATS connection. Not a stable API.
export type { DecodedResponse, DecodeResponseResult, HostActionV1 } from "./host-wire.js";
export {
  buildRequestV1,
  buildRequestV082,
  decodeResponse,
  encodeRequest,
  newRequestId,
} from "./host-wire.js";
