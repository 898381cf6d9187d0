import { readFileSync } from "node:fs";
import { cacheKeyV1, cacheKeyV082, type PolicyRequestV1, type StartComponentBodyV1 } from "@arbiter/protocol";
import { decodeTime, uuidToULID } from "ulid";
import { describe, expect, it } from "vitest";
import { HostRequestError } from "./errors.js";
import {
  buildRequestV1,
  buildRequestV082,
  decodeResponse,
  encodeRequest,
  type HostActionV1,
  newRequestId,
} from "./host-wire.js";

const fixtureText = (name: string) =>
  readFileSync(new URL(`../../../test/data/wasmcloud-v1/${name}.json`, import.meta.url), "utf8").trim();
const fixture = (name: string) => JSON.parse(fixtureText(name)) as PolicyRequestV1;
const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
const bytes = (value: string) => new TextEncoder().encode(value);

/** Every key of every object, depth first, with its path: two JSON texts agree on order iff these do. */
function keyPaths(value: unknown, path = ""): string[] {
  if (typeof value !== "object" || value === null) return [];
  if (Array.isArray(value)) return value.flatMap((item, i) => keyPaths(item, `${path}[${i}]`));
  return Object.entries(value).flatMap(([key, child]) => [
    `${path}.${key}`,
    ...keyPaths(child, `${path}.${key}`),
  ]);
}

function actionOf(request: PolicyRequestV1): HostActionV1 {
  switch (request.kind) {
    case "startComponent":
    case "startProvider":
    case "performInvocation":
      return { kind: request.kind, request: request.request } as HostActionV1;
    case "unknown":
      throw new Error("fixtures have no unknown kind");
  }
}

/** The same object with its keys in reverse order, at every level. */
function reversedKeys<T>(value: T): T {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return value;
  return Object.fromEntries(
    Object.entries(value)
      .reverse()
      .map(([k, v]) => [k, reversedKeys(v)]),
  ) as T;
}

const body: StartComponentBodyV1 = fixture("start-component").request as StartComponentBodyV1;
const host = fixture("start-component").host;

describe("1.x request serialization", () => {
  it.each(["start-component", "start-provider", "perform-invocation"])(
    "reproduces %s byte for byte, keys in the host's order",
    (name) => {
      const real = fixture(name);
      const built = buildRequestV1(real.requestId, actionOf(real), real.host);

      expect(keyPaths(built)).toEqual(keyPaths(JSON.parse(fixtureText(name))));
      expect(text(encodeRequest(built))).toBe(fixtureText(name));
    },
  );

  it("puts fields in the host's order whatever order the caller used", () => {
    const real = fixture("perform-invocation");
    const scrambled = reversedKeys(actionOf(real));

    const built = buildRequestV1(real.requestId, scrambled, reversedKeys(real.host));

    expect(text(encodeRequest(built))).toBe(
      // Labels are a HashMap in the host: their order is the caller's, so only they stay reversed.
      fixtureText("perform-invocation").replace(
        JSON.stringify(real.host.labels),
        JSON.stringify(reversedKeys(real.host.labels)),
      ),
    );
  });

  it("sends null claims and null expiresAt rather than omitting them", () => {
    const unsigned = buildRequestV1(
      "id-1",
      { kind: "startComponent", request: { ...body, claims: null } },
      host,
    );
    const signed = buildRequestV1("id-2", { kind: "startComponent", request: body }, host);

    expect(text(encodeRequest(unsigned))).toContain('"claims":null},"host"');
    expect(text(encodeRequest(signed))).toContain('"expiresAt":null,"expired":false');
  });

  it("drops fields a host does not have", () => {
    const extra = { ...body, extra: 1, claims: { ...body.claims!, extra: 2 } } as StartComponentBodyV1;

    const built = buildRequestV1("id", { kind: "startComponent", request: extra }, host);

    expect(text(encodeRequest(built))).not.toContain("extra");
  });

  it("sorts annotations by UTF-8 bytes, like the host's BTreeMap", () => {
    const annotations = { b: "1", "\u{1F600}": "2", "\u{FFFD}": "3", a: "4" };

    const built = buildRequestV1("id", { kind: "startComponent", request: { ...body, annotations } }, host);

    expect(Object.keys(built.request as StartComponentBodyV1)).toEqual([
      "componentId",
      "imageRef",
      "maxInstances",
      "annotations",
      "claims",
    ]);
    expect(Object.keys((built.request as StartComponentBodyV1).annotations)).toEqual([
      "a",
      "b",
      "\u{FFFD}",
      "\u{1F600}",
    ]);
  });

  it("refuses a body no host could send", () => {
    const negative = { ...body, maxInstances: -1 };

    expect(() => buildRequestV1("id", { kind: "startComponent", request: negative }, host)).toThrow(
      HostRequestError,
    );
    expect(() => buildRequestV1("id", { kind: "startComponent", request: negative }, host)).toThrow(
      /startComponent body: maxInstances/,
    );
  });
});

describe("request ids", () => {
  it("are ULIDs of now as lower-case hyphenated UUIDs, like the fixtures' ids", () => {
    const before = Date.now();
    const id = newRequestId();

    expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    expect(fixture("start-component").requestId).toMatch(
      /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/,
    );
    const time = decodeTime(uuidToULID(id));
    expect(time).toBeGreaterThanOrEqual(before);
    expect(time).toBeLessThanOrEqual(Date.now());
    expect(newRequestId()).not.toBe(id);
  });
});

describe("cache keys of built requests", () => {
  const keyOf = (request: StartComponentBodyV1, hostInfo = host) =>
    cacheKeyV1(buildRequestV1(newRequestId(), { kind: "startComponent", request }, hostInfo));

  it("is kind plus componentId_imageRef", () => {
    expect(keyOf(body)).toBe(
      "startComponent:hello_world-http_component_ghcr.io/wasmcloud/components/http-hello-world-rust:0.1.0",
    );
  });

  it("ignores claims, annotations, maxInstances and the host", () => {
    const changed = {
      ...body,
      maxInstances: 9,
      annotations: { other: "x" },
      claims: {
        ...body.claims!,
        issuer: "ACOJJN6WUP4ODD75XEBKKTCCUJJCY5ZKQ56XVKYK4BEJWGVAOOQHZMCW",
        expired: true,
      },
    };

    expect(keyOf(changed, { ...host, publicKey: "NOTHER", labels: {} })).toBe(keyOf(body));
    expect(keyOf({ ...body, claims: null })).toBe(keyOf(body));
  });

  it("changes with the image reference", () => {
    expect(keyOf({ ...body, imageRef: "ghcr.io/other:1" })).not.toBe(keyOf(body));
  });
});

describe("0.82 request serialization", () => {
  const legacy = {
    source: {},
    target: { publicKey: "MBFFVNGFK3IA2ZXXG5DQXQNYM6TNG45PHJMJIJFVFI6YKS3XTXL3DRRK" },
    host: {
      publicKey: "NBLSJGGOETB677FQL63PWKDCVMOW4LXVI7S6WXSP55H7L5RNRKUDZKGE",
      latticeId: "default",
      labels: {},
    },
    action: "start_actor" as const,
  };

  it("fills what the host's Rust types always carry, in its order", () => {
    const built = buildRequestV082("id-82", legacy);

    expect(text(encodeRequest(built))).toBe(
      '{"requestId":"id-82",' +
        '"source":{"publicKey":null,"contractId":null,"linkName":null,"capabilities":[],"issuer":null,' +
        '"issuedOn":null,"expiresAt":null,"expired":false},' +
        '"target":{"publicKey":"MBFFVNGFK3IA2ZXXG5DQXQNYM6TNG45PHJMJIJFVFI6YKS3XTXL3DRRK","issuer":null,' +
        '"contractId":null,"linkName":null},' +
        '"host":{"publicKey":"NBLSJGGOETB677FQL63PWKDCVMOW4LXVI7S6WXSP55H7L5RNRKUDZKGE","latticeId":"default",' +
        '"labels":{},"clusterIssuers":[]},"action":"start_actor"}',
    );
  });

  it("keys the cache on the whole source, target and action, not on the host", () => {
    const key = cacheKeyV082(buildRequestV082("a", legacy));
    const explicit = { ...legacy, source: { capabilities: [], expired: false, issuer: null } };

    expect(cacheKeyV082(buildRequestV082("b", explicit))).toBe(key);
    expect(cacheKeyV082(buildRequestV082("c", { ...legacy, host: { ...legacy.host, latticeId: "x" } }))).toBe(
      key,
    );
    expect(cacheKeyV082(buildRequestV082("d", { ...legacy, source: { issuer: "A" } }))).not.toBe(key);
    expect(cacheKeyV082(buildRequestV082("e", { ...legacy, action: "start_provider" }))).not.toBe(key);
  });

  it("refuses an unknown action", () => {
    expect(() => buildRequestV082("x", { ...legacy, action: "stop_actor" as "start_actor" })).toThrow(
      HostRequestError,
    );
  });
});

describe("performInvocation requests", () => {
  // The host fills the target itself with `max_instances: 0` (crate `policy.rs`,
  // `evaluate_perform_invocation`), whatever the component runs with.
  it("always send the target with maxInstances 0, as the host does", () => {
    const invocation = fixture("perform-invocation");
    if (invocation.kind !== "performInvocation") throw new Error("not an invocation fixture");
    const { request } = invocation;
    const built = buildRequestV1(
      "id",
      { kind: "performInvocation", request: { ...request, target: { ...request.target, maxInstances: 5 } } },
      invocation.host,
    );
    expect(built.request).toMatchObject({ target: { maxInstances: 0 } });
  });
});

describe("response decoding, as the host's serde does it", () => {
  it("accepts a response and ignores unknown fields", () => {
    const decoded = decodeResponse(bytes('{"requestId":"r","permitted":true,"message":"ok","extra":[1]}'));

    expect(decoded).toEqual({ ok: true, response: { requestId: "r", permitted: true, message: "ok" } });
  });

  it("reads a missing or null message as null", () => {
    expect(decodeResponse(bytes('{"requestId":"r","permitted":false}'))).toEqual({
      ok: true,
      response: { requestId: "r", permitted: false, message: null },
    });
    expect(decodeResponse(bytes('{"requestId":"r","permitted":false,"message":null}'))).toMatchObject({
      ok: true,
    });
  });

  it.each([
    ["not JSON", "permit"],
    ["empty", ""],
    ["snake_case id only", '{"request_id":"r","permitted":true,"message":null}'],
    ["permitted as a string", '{"requestId":"r","permitted":"true","message":null}'],
    ["numeric id", '{"requestId":1,"permitted":true,"message":null}'],
    ["non-string message", '{"requestId":"r","permitted":true,"message":5}'],
    ["an empty array", "[]"],
  ])("rejects %s", (_, payload) => {
    expect(decodeResponse(bytes(payload))).toMatchObject({ ok: false });
  });

  // serde_json's derived `Response` reads a struct from a JSON array too, field by field in
  // declaration order (requestId, permitted, message), exactly three elements; the real 1.9 host
  // applies such an override (test/peers/wasmcloud-host.peers.ts).
  it("accepts the array form of a response, as serde reads a struct from a sequence", () => {
    expect(decodeResponse(bytes('["r",true,"granted"]'))).toEqual({
      ok: true,
      response: { requestId: "r", permitted: true, message: "granted" },
    });
    expect(decodeResponse(bytes('["r",false,null]'))).toEqual({
      ok: true,
      response: { requestId: "r", permitted: false, message: null },
    });
  });

  it.each([
    ["an array of two (message has no default in a sequence)", '["r",true]'],
    ["an array of four", '["r",true,null,1]'],
    ["an array with a non-boolean permitted", '["r","yes",null]'],
    ["a duplicate permitted", '{"requestId":"r","permitted":true,"permitted":false}'],
    ["a duplicate requestId, escaped", '{"requestId":"r","\\u0072equestId":"s","permitted":true}'],
    ["a duplicate message", '{"requestId":"r","permitted":true,"message":null,"message":"x"}'],
    ["a lone surrogate in requestId", '{"requestId":"\\ud800","permitted":true}'],
    ["a lone trailing surrogate in message", '{"requestId":"r","permitted":true,"message":"\\udc00"}'],
    ["a lone surrogate in a top-level key", '{"requestId":"r","permitted":true,"\\ud800":1}'],
    ["a byte order mark", '\ufeff{"requestId":"r","permitted":true}'],
  ])("rejects what serde_json rejects: %s", (_, payload) => {
    expect(decodeResponse(bytes(payload))).toMatchObject({ ok: false });
  });

  it.each([
    ["a duplicate unknown field", '{"requestId":"r","x":1,"x":2,"permitted":true}'],
    ["a duplicate nested key", '{"requestId":"r","permitted":true,"x":{"a":1,"a":2}}'],
    ["a lone surrogate in an ignored value", '{"requestId":"r","permitted":true,"x":"\\ud800"}'],
    // serde_json skips an ignored value without its recursion limit of 128.
    [
      "an ignored value nested 300 deep",
      `{"requestId":"r","permitted":true,"x":${"[".repeat(300)}${"]".repeat(300)}}`,
    ],
    ["a paired surrogate", '{"requestId":"\\ud83d\\ude00","permitted":true}'],
    ["a field's name as a value", '{"requestId":"permitted","permitted":true,"message":"requestId"}'],
    ["a field's name as a nested key", '{"requestId":"r","permitted":true,"x":{"permitted":1}}'],
  ])("accepts what serde_json accepts: %s", (_, payload) => {
    expect(decodeResponse(bytes(payload))).toMatchObject({ ok: true });
  });

  it("rejects invalid UTF-8", () => {
    const invalid = new Uint8Array([...bytes('{"requestId":"'), 0xff, ...bytes('","permitted":true}')]);

    expect(decodeResponse(invalid)).toMatchObject({ ok: false, reason: expect.stringMatching(/UTF-8/) });
  });
});
