import { readFileSync } from "node:fs";
import { describe, expect, it, vi } from "vitest";
import { legacyStartActor } from "../../../test/support/fixtures.js";
import { decodePolicyRequest, decodePolicyValue, isByteLevelRejection } from "./policy-request.js";
import { PolicyRequestV1 } from "./wasmcloud.js";

const fixture = (name: string) =>
  readFileSync(new URL(`../../../test/data/wasmcloud-v1/${name}.json`, import.meta.url));
const encode = (value: unknown) =>
  new TextEncoder().encode(typeof value === "string" ? value : JSON.stringify(value));

const legacy = legacyStartActor();

describe("1.x requests from real hosts", () => {
  it("decodes startComponent with its host cache key", () => {
    const decoded = decodePolicyRequest(fixture("start-component"));
    expect(decoded.ok).toBe(true);
    if (!decoded.ok) return;
    expect(decoded.request).toMatchObject({
      lineage: "v1",
      requestId: "01945242-abec-71ee-f5e6-1f44eb61ad40",
      kind: "startComponent",
      cacheKey:
        "startComponent:hello_world-http_component_ghcr.io/wasmcloud/components/http-hello-world-rust:0.1.0",
      claims: {
        issuer: "ADVIWF6Z3BFZNWUXJYT5NEAZZ2YX4T6NRKI3YOR3HKOSQQN7IVDGWSNO",
        issuedAt: "1714506509",
        expiresAt: null,
      },
      host: { lattice: "default" },
    });
  });

  it("decodes startProvider and performInvocation (claims inside target)", () => {
    const provider = decodePolicyRequest(fixture("start-provider"));
    expect(provider.ok && provider.request.cacheKey).toBe(
      "startProvider:hello_world-httpserver_ghcr.io/wasmcloud/http-server:0.23.0",
    );
    const invocation = decodePolicyRequest(fixture("perform-invocation"));
    expect(invocation.ok).toBe(true);
    if (!invocation.ok) return;
    expect(invocation.request.claims?.publicKey).toBe(
      "MBFFVNGFK3IA2ZXXG5DQXQNYM6TNG45PHJMJIJFVFI6YKS3XTXL3DRRK",
    );
    expect(invocation.request.invocation).toEqual({
      interface: "wrpc:http/incoming-handler@0.1.0",
      function: "handle",
    });
    expect(invocation.request.cacheKey).toBe(
      "performInvocation:hello_world-http_component_ghcr.io/wasmcloud/components/http-hello-world-rust:0.1.0_wrpc:http/incoming-handler@0.1.0_handle",
    );
    expect(invocation.request.subject?.maxInstances).toBe(0);
  });

  it("keeps labels and annotations as sent, and names any that is not a string", () => {
    const raw = JSON.parse(fixture("start-component").toString("utf8"));
    raw.host.labels = { zone: "eu-1", "": "empty key", "hostcore.cpus": "8" };
    const decoded = decodePolicyValue(raw);
    expect(decoded.ok && decoded.request.host.labels).toEqual(raw.host.labels);
    expect(decoded.ok && decoded.request.subject?.annotations).toEqual(raw.request.annotations);

    raw.request.annotations = { "wasmcloud.dev/scaler": 3 };
    expect(decodePolicyValue(raw)).toMatchObject({
      ok: false,
      reason: expect.stringMatching(
        /request\.annotations\.wasmcloud\.dev\/scaler: .*expected string, received number/,
      ),
    });
    raw.request.annotations = ["a=b"];
    expect(decodePolicyValue(raw)).toMatchObject({
      ok: false,
      reason: expect.stringMatching(/request\.annotations: .*expected object, received array/),
    });
  });

  it("keeps the request exactly as received as input", () => {
    const raw = JSON.parse(fixture("start-provider").toString("utf8"));
    raw.extra = { future: "field" };
    const decoded = decodePolicyValue(raw);
    expect(decoded.ok && decoded.request.input).toEqual(raw);
  });

  it("claims, annotations and host are not part of the cache key", () => {
    const raw = PolicyRequestV1.parse(JSON.parse(fixture("start-component").toString("utf8")));
    const a = decodePolicyValue(raw);
    const changed = structuredClone(raw) as {
      request: { claims: unknown; annotations: unknown };
      host: { publicKey: string };
    };
    changed.request.claims = null;
    changed.request.annotations = {};
    changed.host.publicKey = "NOTHER";
    const b = decodePolicyValue(changed);
    expect(a.ok && b.ok && a.request.cacheKey === b.request.cacheKey).toBe(true);
  });
});

describe("0.82 requests", () => {
  it("decodes a start_actor request and maps it to startComponent", () => {
    const decoded = decodePolicyRequest(encode(legacy));
    expect(decoded.ok).toBe(true);
    if (!decoded.ok) return;
    expect(decoded.request).toMatchObject({
      lineage: "v0.82",
      kind: "startComponent",
      host: { lattice: "default" },
      claims: { issuer: "ACOJJN6WUP4ODD75XEBKKTCCUJJCY5ZKQ56XVKYK4BEJWGVAOOQHZMCW" },
    });
    expect(decoded.request.cacheKey.startsWith("start_actor:")).toBe(true);
  });

  it("rejects an unknown action with the request id", () => {
    const decoded = decodePolicyRequest(encode({ ...legacy, action: "start_thing" }));
    expect(decoded).toMatchObject({ ok: false, requestId: legacy.requestId });
    expect(!decoded.ok && decoded.reason).toMatch(/unknown action "start_thing"/);
  });
});

describe("rejections name the problem and keep the request id", () => {
  const base = JSON.parse(fixture("start-component").toString("utf8"));
  const id = base.requestId as string;
  const cases: [string, Uint8Array, RegExp][] = [
    ["not JSON", encode(`{"requestId":"${id}", kind`), /not JSON/],
    [
      "issuedAt as a number",
      encode({ ...base, request: { ...base.request, claims: { ...base.request.claims, issuedAt: 1 } } }),
      /request\.claims\.issuedAt/,
    ],
    ["missing host", encode({ ...base, host: undefined }), /host/],
    ["unknown kind", encode({ ...base, kind: "startFoo" }), /unknown kind "startFoo"/],
    [
      "__proto__ key",
      encode(`{"requestId":"${id}","kind":"startComponent","__proto__":{"x":1}}`),
      /__proto__/,
    ],
    [
      "a number beyond a double's range",
      encode(`${JSON.stringify(base).slice(0, -1)},"limits":[1,-2e400]}`),
      /limits\[1\]: a number beyond the range of a double/,
    ],
    [
      "too deep",
      encode(
        `{"requestId":"${id}","kind":"unknown","version":"v1","request":${"[".repeat(100)}${"]".repeat(100)}}`,
      ),
      /nested deeper/,
    ],
    ["oversized", encode({ ...base, pad: "x".repeat(2000) }), /exceeds the limit of 1000 bytes/],
    [
      "invalid UTF-8",
      Uint8Array.of(...encode(`{"requestId":"${id}","x":"`), 0xff, 0xfe, ...encode('"}')),
      /UTF-8/,
    ],
  ];
  for (const [name, bytes, reason] of cases) {
    it(name, () => {
      const decoded = decodePolicyRequest(bytes, { maxBytes: name === "oversized" ? 1000 : undefined });
      expect(decoded.ok).toBe(false);
      if (decoded.ok) return;
      expect(decoded.requestId).toBe(id);
      expect(decoded.reason).toMatch(reason);
    });
  }

  it("refuses more than 10,000 values, keeps none of them, and decodes a stored value of any count", () => {
    const many = { ...base, pad: Array(10_000).fill({}) };
    const decoded = decodePolicyRequest(encode(many));
    expect(decoded).toMatchObject({ ok: false, requestId: id, input: null, kind: "startComponent" });
    expect(!decoded.ok && decoded.reason).toBe(
      "payload: more than 10000 JSON values (a policy request holds a few dozen)",
    );
    expect(!decoded.ok && isByteLevelRejection(decoded.reason)).toBe(true);
    // A record of an earlier release is evaluated again as it was decided.
    expect(decodePolicyValue(many).ok).toBe(true);
    expect(decodePolicyRequest(encode({ ...base, pad: Array(9_000).fill(0) })).ok).toBe(true);
    expect(decodePolicyRequest(encode(many), { maxValues: 100_000 }).ok).toBe(true);
  });

  it("refuses a text of more than 10,000 objects and arrays before parsing it", () => {
    // JSON.parse takes a tenth of a second and more on a megabyte of brackets.
    const n = 400_000;
    const brackets = `${"[".repeat(n)}${"]".repeat(n)}`;
    const nested = `{"requestId":"${id}","kind":"startComponent","pad":${brackets}}`;
    const empties = `${JSON.stringify(base).slice(0, -1)},"pad":[${Array(10_001).fill("[]").join(",")}]}`;
    const inStrings = `${JSON.stringify(base).slice(0, -1)},"pad":"${'[{\\"'.repeat(20_000)}"}`;
    const parse = vi.spyOn(JSON, "parse");
    try {
      for (const text of [nested, empties]) {
        const decoded = decodePolicyRequest(encode(text), { maxBytes: 2 * 1024 * 1024 });
        expect(decoded).toMatchObject({ ok: false, requestId: id, input: null, kind: "startComponent" });
        expect(!decoded.ok && decoded.reason).toBe(
          "payload: more than 10000 JSON values (a policy request holds a few dozen)",
        );
      }
      expect(parse.mock.calls.filter(([text]) => String(text).length > 10_000)).toEqual([]);
    } finally {
      parse.mockRestore();
    }
    // Brackets inside strings are no values.
    expect(decodePolicyRequest(encode(inStrings)).ok).toBe(true);
  });

  it("answers nothing it cannot attribute, but says why", () => {
    const decoded = decodePolicyRequest(encode([1, 2, 3]));
    expect(decoded).toMatchObject({ ok: false, requestId: null });
    expect(!decoded.ok && decoded.reason).toMatch(/expected a JSON object, got an array/);
  });
});

describe("a request that repeats a key is refused, since it can be read two ways", () => {
  const text = fixture("start-component").toString("utf8").trim();
  const id = JSON.parse(text).requestId as string;
  const refused = (payload: string) => {
    const decoded = decodePolicyRequest(encode(payload));
    expect(decoded.ok, payload.slice(0, 80)).toBe(false);
    return decoded.ok ? null : decoded;
  };

  it("names the key and the object it is repeated in, and keeps the request id and kind", () => {
    const evil =
      '"claims":{"publicKey":"M","issuer":"AEVIL","issuedAt":"0","expiresAt":null,"expired":false},';
    expect(refused(text.replace('"claims":', `${evil}"claims":`))).toMatchObject({
      requestId: id,
      kind: "startComponent",
      reason: 'duplicate key "claims" at request',
    });
    expect(refused(text.replace('"version"', '"kind":"unknown","version"'))?.reason).toBe(
      'duplicate key "kind" at the top level',
    );
    expect(refused(text.replace('"lattice"', '"lattice":"other","lattice"'))?.reason).toBe(
      'duplicate key "lattice" at host',
    );
    expect(refused(text.replace('"kubernetes"', '"kubernetes":"false","kubernetes"'))?.reason).toBe(
      'duplicate key "kubernetes" at host.labels',
    );
  });

  it("sees a key written with escapes as the same key", () => {
    expect(refused(text.replace('"version"', '"\\u006bind":"unknown","version"'))?.reason).toBe(
      'duplicate key "kind" at the top level',
    );
  });

  it("finds repeats inside arrays and in 0.82 requests", () => {
    const withList = JSON.stringify({ ...JSON.parse(text), extra: [{ a: 1 }, { b: 1 }] }).replace(
      '{"b":1}',
      '{"b":1,"b":2}',
    );
    expect(refused(withList)?.reason).toBe('duplicate key "b" at extra[1]');
    const legacyText = JSON.stringify(legacy).replace('"action"', '"action":"start_provider","action"');
    expect(refused(legacyText)).toMatchObject({
      requestId: legacy.requestId,
      reason: 'duplicate key "action" at the top level',
    });
  });

  it("cuts a long repeated key in the reason", () => {
    const key = "k".repeat(5000);
    const reason = refused(text.replace(/}$/, `,"${key}":1,"${key}":2}`))?.reason ?? "";
    expect(reason).toMatch(/^duplicate key "k{64}…\(5000 characters\)" at the top level$/);
  });

  it("accepts the same key in different objects", () => {
    expect(text.match(/"publicKey"/g)).toHaveLength(2);
    expect(decodePolicyRequest(encode(text)).ok).toBe(true);
  });
});
