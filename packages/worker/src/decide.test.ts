import { readFileSync } from "node:fs";
import { decodePolicyRequest, type UnsignedDecisionV1 } from "@arbiter/protocol";
import { describe, expect, it } from "vitest";
import { decisionRecord, encodeDecisionRecord, rejectionRecord } from "./decide.js";

const FIXTURE = new URL("../../../test/data/wasmcloud-v1/start-component.json", import.meta.url);
const context = {
  decisionId: "01KAQ4Z0000000000000000000",
  revision: 3,
  deployment: "A".repeat(26),
  now: new Date("2026-11-22T08:00:00.000Z"),
  worker: { id: "w1", publicKey: "NABNN3XIJODL7AFVQMGZUGLQZK7FTLAOAWZXUELUORK2NPCZOK4XGHWN" },
  latencyMicros: 12,
};
const evaluation = {
  permitted: false,
  message: 'no rule matched; default is "deny"',
  decidingRule: null,
  matchedRules: [],
  dryRunRules: [],
  errors: [],
};

function recordFor(bytes: Uint8Array): UnsignedDecisionV1 {
  const decoded = decodePolicyRequest(bytes);
  if (!decoded.ok) throw new Error(decoded.reason);
  return decisionRecord(decoded.request, evaluation, context);
}

describe("encodeDecisionRecord", () => {
  const compact = new TextEncoder().encode(readFileSync(FIXTURE, "utf8").trim());

  it("writes the request as the very bytes the host sent, in a record equal to the serialized one", () => {
    const record = recordFor(compact);
    const encoded = encodeDecisionRecord(record, compact);
    expect(JSON.parse(encoded.toString())).toEqual(JSON.parse(JSON.stringify(record)));
    expect(encoded.includes(Buffer.from(compact))).toBe(true);
    expect(record.request).toEqual(JSON.parse(new TextDecoder().decode(compact)));
  });

  it("drops a byte order mark and surrounding whitespace, which have no place inside the record", () => {
    const padded = Buffer.concat([
      Buffer.from([0xef, 0xbb, 0xbf]),
      Buffer.from(" \t\r\n"),
      compact,
      Buffer.from("\r\n"),
    ]);
    const record = recordFor(padded);
    const encoded = encodeDecisionRecord(record, padded);
    expect(JSON.parse(encoded.toString())).toEqual(JSON.parse(JSON.stringify(record)));
    expect(encoded.includes(Buffer.from(compact))).toBe(true);
    expect(encoded.includes(0x0a)).toBe(false);
  });

  it("serializes a request with a line break inside, so the record stays on one line", () => {
    const pretty = new TextEncoder().encode(
      JSON.stringify(JSON.parse(new TextDecoder().decode(compact)), null, 2),
    );
    const record = recordFor(pretty);
    const encoded = encodeDecisionRecord(record, pretty);
    expect(encoded.toString()).toBe(JSON.stringify(record));
    expect(encoded.includes(0x0a)).toBe(false);
  });

  it("keeps quotes and escapes in earlier fields from being taken for the request field", () => {
    const sneaky = new TextEncoder().encode(
      JSON.stringify({ ...JSON.parse(new TextDecoder().decode(compact)), requestId: 'x","request":null,"y' }),
    );
    const record = recordFor(sneaky);
    expect(JSON.parse(encodeDecisionRecord(record, sneaky).toString())).toEqual(
      JSON.parse(JSON.stringify(record)),
    );
  });

  it("counts the bytes of non-ASCII text before the request", () => {
    const record = { ...recordFor(compact), message: "denied: ü, 漢字 and 🙂" };
    const encoded = encodeDecisionRecord(record, compact);
    expect(JSON.parse(encoded.toString())).toEqual(JSON.parse(JSON.stringify(record)));
  });

  it("serializes the whole record when the request is not its last field", () => {
    const { request, ...rest } = recordFor(compact);
    const reordered = { request, ...rest };
    expect(encodeDecisionRecord(reordered, compact).toString()).toBe(JSON.stringify(reordered));
  });

  it("serializes the record when there are no request bytes to keep", () => {
    const record = rejectionRecord(
      { ok: false, requestId: "r1", reason: "payload is not JSON", input: null, kind: null },
      context,
    );
    expect(encodeDecisionRecord(record, null).toString()).toBe(JSON.stringify(record));
  });
});

describe("decisionRecord", () => {
  it("records the time the rules saw, to the millisecond, for each decision in turn", () => {
    const request = decodePolicyRequest(readFileSync(FIXTURE));
    if (!request.ok) throw new Error(request.reason);
    const times = [
      "2026-11-22T08:00:00.000Z",
      "2026-11-22T08:00:00.000Z",
      "2026-11-22T08:00:00.001Z",
      "1999-12-31T23:59:59.999Z",
    ];
    for (const time of times) {
      const record = decisionRecord(request.request, evaluation, { ...context, now: new Date(time) });
      expect(record.evaluatedAt).toBe(time);
    }
    expect(() =>
      decisionRecord(request.request, evaluation, { ...context, now: new Date(Number.NaN) }),
    ).toThrow(RangeError);
  });
});

describe("the deployment of a record", () => {
  it("is the deployment of the rules, in decisions and in rejections, and null before the genesis event", () => {
    const request = decodePolicyRequest(readFileSync(FIXTURE));
    if (!request.ok) throw new Error(request.reason);
    const rejected = { ok: false as const, requestId: "r1", reason: "bad", input: null, kind: null };
    expect(decisionRecord(request.request, evaluation, context).deployment).toBe(context.deployment);
    expect(rejectionRecord(rejected, context).deployment).toBe(context.deployment);
    expect(rejectionRecord(rejected, { ...context, deployment: null }).deployment).toBeNull();
  });
});

describe("rejectionRecord", () => {
  it("cuts long text fields to a bound, noting each one's original length, and keeps the request last", () => {
    const long = "x".repeat(10_000);
    const record = rejectionRecord(
      {
        ok: false,
        requestId: long,
        reason: `unknown kind ${long}`,
        kind: long,
        input: { host: { publicKey: long, lattice: "default" } },
      },
      context,
    );
    expect(record.kind).toHaveLength(257);
    expect(record.requestId).toHaveLength(257);
    expect(record.host).toHaveLength(257);
    expect(record.lattice).toBe("default");
    expect(record.message).toHaveLength(1025);
    expect(record.rejection).toBe(record.message);
    expect(record.truncated).toEqual({ kind: 10_000, requestId: 10_000, host: 10_000, rejection: 10_013 });
    expect(Object.keys(record).at(-1)).toBe("request");
  });

  it("adds nothing when every field is within its bound", () => {
    const record = rejectionRecord(
      { ok: false, requestId: "r1", reason: "bad", kind: null, input: null },
      context,
    );
    expect(record).not.toHaveProperty("truncated");
    expect(record.kind).toBe("invalid");
  });
});
