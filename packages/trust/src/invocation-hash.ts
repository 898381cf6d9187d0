import { createHash } from "node:crypto";

/**
 * The hash an invocation's claims carry: SHA-256 over origin URL ‖ target URL ‖ operation ‖ msg
 * (the strings as UTF-8, nothing between them), as upper-case hex.
 */
export function invocationHash(
  originUrl: string,
  targetUrl: string,
  operation: string,
  msg: Uint8Array,
): string {
  return createHash("sha256")
    .update(originUrl)
    .update(targetUrl)
    .update(operation)
    .update(msg)
    .digest("hex")
    .toUpperCase();
}
