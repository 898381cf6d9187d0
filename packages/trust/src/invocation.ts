import { decode as decodeMsgpack, encode as encodeMsgpack } from "@msgpack/msgpack";
import { z } from "zod";
import { WasmcloudEntity } from "./entity-url.js";

// The zero-trust Invocation of the wasmCloud 0.x wire format: msgpack with named fields on the
// bus (rmp-serde), `msg` as bytes. Arbiter also reads a JSON form, `msg` in base64, for people.

const Bytes = z.custom<Uint8Array>((value) => value instanceof Uint8Array, { message: "expected bytes" });

/** An invocation as it travels, its claims token still unchecked (see `verifyInvocation`). */
export const InvocationV1 = z.object({
  origin: WasmcloudEntity,
  target: WasmcloudEntity,
  operation: z.string(),
  msg: Bytes,
  id: z.string(),
  encoded_claims: z.string(),
  host_id: z.string(),
  content_length: z.number().int().nonnegative().nullable().optional(),
  traceContext: z.record(z.string(), z.string()).optional(),
});
export type InvocationV1 = z.infer<typeof InvocationV1>;

/** What {@link parseInvocation} found: the invocation, or what was wrong with the bytes. */
export type ParsedInvocation =
  | { readonly ok: true; readonly invocation: InvocationV1; readonly format: "json" | "msgpack" }
  | { readonly ok: false; readonly reason: string };

const OPEN_BRACE = 0x7b;

/**
 * Reads an invocation from bytes: JSON (first non-blank byte `{`, `msg` in base64) or msgpack
 * (anything else; `msg` as bin, or as an array of byte values). Never throws.
 */
export function parseInvocation(bytes: Uint8Array): ParsedInvocation {
  let start = 0;
  while (start < bytes.length && isBlank(bytes[start]!)) start++;
  return bytes[start] === OPEN_BRACE ? parseJson(bytes) : parseMsgpack(bytes);
}

/** The invocation as msgpack with named fields, in the wasmCloud struct's field order. */
export function encodeInvocationMsgpack(invocation: InvocationV1): Uint8Array {
  return encodeMsgpack(ordered(invocation), { ignoreUndefined: true });
}

/** The invocation's JSON form, `msg` in base64: what `arbiter trust verify-invocation` reads. */
export function invocationToJson(invocation: InvocationV1): Record<string, unknown> {
  return { ...ordered(invocation), msg: Buffer.from(invocation.msg).toString("base64") };
}

function ordered(invocation: InvocationV1): Record<string, unknown> {
  return {
    origin: invocation.origin,
    target: invocation.target,
    operation: invocation.operation,
    msg: invocation.msg,
    id: invocation.id,
    encoded_claims: invocation.encoded_claims,
    host_id: invocation.host_id,
    content_length: invocation.content_length ?? invocation.msg.length,
    traceContext: invocation.traceContext ?? {},
  };
}

function parseJson(bytes: Uint8Array): ParsedInvocation {
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(bytes).toString("utf8"));
  } catch (err) {
    return { ok: false, reason: `not JSON: ${(err as Error).message}` };
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    return { ok: false, reason: "the JSON is not an object" };
  }
  const msg = (value as Record<string, unknown>)["msg"];
  if (typeof msg !== "string" || !isBase64(msg)) {
    return { ok: false, reason: "msg: expected the message bytes in base64" };
  }
  return check({ ...value, msg: new Uint8Array(Buffer.from(msg, "base64")) }, "json");
}

function parseMsgpack(bytes: Uint8Array): ParsedInvocation {
  let value: unknown;
  try {
    value = decodeMsgpack(bytes);
  } catch (err) {
    return { ok: false, reason: `neither JSON nor msgpack: ${(err as Error).message}` };
  }
  if (typeof value !== "object" || value === null || Array.isArray(value) || value instanceof Uint8Array) {
    return { ok: false, reason: "the msgpack value is not a map with named fields" };
  }
  const msg = (value as Record<string, unknown>)["msg"];
  // rmp-serde writes a Vec<u8> without serde_bytes as an array of small integers.
  const asBytes =
    Array.isArray(msg) && msg.every((b) => Number.isInteger(b) && b >= 0 && b <= 255)
      ? Uint8Array.from(msg as number[])
      : msg;
  return check({ ...value, msg: asBytes }, "msgpack");
}

function check(value: object, format: "json" | "msgpack"): ParsedInvocation {
  const parsed = InvocationV1.safeParse(value);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => `${i.path.join(".") || "invocation"}: ${i.message}`);
    return { ok: false, reason: `not an invocation: ${issues.join("; ")}` };
  }
  return { ok: true, invocation: parsed.data, format };
}

/**
 * Whether `text` is standard base64, padded or not. A loop rather than a regular expression: a
 * repeated group over a message of megabytes overflows the regular expression engine's stack.
 */
function isBase64(text: string): boolean {
  let end = text.length;
  if (text.endsWith("==")) {
    end -= 2;
    if (end % 4 !== 2) return false;
  } else if (text.endsWith("=")) {
    end -= 1;
    if (end % 4 !== 3) return false;
  } else if (end % 4 === 1) {
    return false;
  }
  for (let i = 0; i < end; i++) {
    const c = text.charCodeAt(i);
    const ok =
      (c >= 0x41 && c <= 0x5a) ||
      (c >= 0x61 && c <= 0x7a) ||
      (c >= 0x30 && c <= 0x39) ||
      c === 0x2b ||
      c === 0x2f;
    if (!ok) return false;
  }
  return true;
}

function isBlank(byte: number): boolean {
  return byte === 0x20 || byte === 0x09 || byte === 0x0a || byte === 0x0d;
}
