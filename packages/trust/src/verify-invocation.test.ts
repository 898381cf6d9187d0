import { createHash, generateKeyPairSync, type KeyObject, sign } from "node:crypto";
import { encode as encodeMsgpack } from "@msgpack/msgpack";
import { describe, expect, it } from "vitest";
import { entityUrl, targetUrl, type WasmcloudEntity } from "./entity-url.js";
import {
  encodeInvocationMsgpack,
  type InvocationV1,
  invocationToJson,
  parseInvocation,
} from "./invocation.js";
import { invocationHash } from "./invocation-hash.js";
import { createSigner, generateKey } from "./signing.js";
import { InvocationReason, signInvocation, verifyInvocation } from "./verify-invocation.js";

// An independent implementation of the zero-trust invocation format, written from the design's
// facts (DESIGN.md §1) with node:crypto directly: its own nkey encoding, base64url, JSON, entity
// URLs and hash. Tokens it makes must verify with the project's verifier, and its forgeries must
// fail for the right reason.
const independent = (() => {
  const ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  const crc16 = (bytes: Uint8Array) => {
    let crc = 0;
    for (const byte of bytes) {
      crc ^= byte << 8;
      for (let i = 0; i < 8; i++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
    }
    return crc;
  };
  const base32 = (bytes: Uint8Array) => {
    let bits = "";
    for (const byte of bytes) bits += byte.toString(2).padStart(8, "0");
    let out = "";
    for (let i = 0; i < bits.length; i += 5)
      out += ALPHABET[Number.parseInt(bits.slice(i, i + 5).padEnd(5, "0"), 2)];
    return out;
  };
  const nkey = (letter: string, raw: Uint8Array) => {
    const prefix = ALPHABET.indexOf(letter) << 3;
    const payload = Uint8Array.of(prefix, ...raw);
    const crc = crc16(payload);
    return base32(Uint8Array.of(...payload, crc & 0xff, crc >> 8));
  };
  const b64url = (bytes: Uint8Array) =>
    Buffer.from(bytes).toString("base64").replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  const url = (e: WasmcloudEntity) =>
    e.public_key.startsWith("M")
      ? `wasmbus://${e.public_key}`
      : `wasmbus://${e.contract_id.split(":").join("/").split(" ").join("_").toLowerCase()}/${e.link_name.split(" ").join("_").toLowerCase()}/${e.public_key}`;
  const hash = (origin: string, target: string, operation: string, msg: Uint8Array) =>
    createHash("sha256")
      .update(Buffer.concat([Buffer.from(origin + target + operation, "utf8"), msg]))
      .digest("hex")
      .toUpperCase();
  const clusterKey = () => {
    const { privateKey, publicKey } = generateKeyPairSync("ed25519");
    const jwk = publicKey.export({ format: "jwk" }) as { x: string };
    return { privateKey, publicKey: nkey("C", Buffer.from(jwk.x, "base64url")) };
  };
  const hostKey = () => {
    const { publicKey } = generateKeyPairSync("ed25519");
    return nkey("N", Buffer.from((publicKey.export({ format: "jwk" }) as { x: string }).x, "base64url"));
  };
  const jwt = (header: object | string, claims: object | string, key: KeyObject) => {
    const h = b64url(Buffer.from(typeof header === "string" ? header : JSON.stringify(header)));
    const c = b64url(Buffer.from(typeof claims === "string" ? claims : JSON.stringify(claims)));
    return `${h}.${c}.${b64url(sign(null, Buffer.from(`${h}.${c}`, "ascii"), key))}`;
  };
  return { url, hash, clusterKey, hostKey, jwt, b64url };
})();

const NOW = new Date("2026-03-01T12:00:00Z");
const NOW_S = Math.floor(NOW.getTime() / 1000);
const cluster = independent.clusterKey();
const host = independent.hostKey();
const origin: WasmcloudEntity = {
  public_key: "MBFFVNGFK3IA2ZXXG5DQXQNYM6TNG45PHJMJIJFVFI6YKS3XTXL3DRRK",
  link_name: "",
  contract_id: "",
};
const target: WasmcloudEntity = {
  public_key: "VAG3QITQQ2ODAOWB5TTQSDJ53XK3SHBEIFNK4AYJ5RKAX2UNSCAPHA5M",
  link_name: "Default Link",
  contract_id: "wasmcloud:Key Value",
};
const operation = "KeyValue.Get";
const msg = Buffer.from('{"key":"counter"}');

/** An invocation signed by the independent implementation, with `change` applied to its claims. */
function forged(
  change: (claims: Record<string, unknown>) => void = () => {},
  options: { header?: object | string; key?: KeyObject; invocation?: Partial<InvocationV1> } = {},
): InvocationV1 {
  const originUrl = independent.url(origin);
  const targetUrl = `${independent.url(target)}/${operation}`;
  const claims: Record<string, unknown> = {
    jti: "a-token-id",
    iat: NOW_S - 5,
    iss: cluster.publicKey,
    sub: "an-invocation-id",
    wascap: {
      target_url: targetUrl,
      origin_url: originUrl,
      hash: independent.hash(originUrl, targetUrl, operation, msg),
    },
    wascap_revision: 3,
  };
  change(claims);
  return {
    origin,
    target,
    operation,
    msg,
    id: "an-invocation-id",
    encoded_claims: independent.jwt(
      options.header ?? { typ: "jwt", alg: "Ed25519" },
      claims,
      options.key ?? cluster.privateKey,
    ),
    host_id: host,
    content_length: msg.length,
    ...options.invocation,
  };
}

const setClaim = (key: string, value: unknown) => (claims: Record<string, unknown>) => {
  claims[key] = value;
};
const setWascap = (key: string, value: string) => (claims: Record<string, unknown>) => {
  (claims["wascap"] as Record<string, string>)[key] = value;
};

const verify = (inv: InvocationV1, issuers = [cluster.publicKey]) =>
  verifyInvocation(inv, { issuers, now: NOW });
const codes = (inv: InvocationV1, issuers?: string[]) => verify(inv, issuers).reasons.map((r) => r.code);

describe("entity URLs and the hash", () => {
  it("names a component by its key and anything else by contract, link name and key", () => {
    expect(entityUrl(origin)).toBe(`wasmbus://${origin.public_key}`);
    expect(entityUrl(target)).toBe(`wasmbus://wasmcloud/key_value/default_link/${target.public_key}`);
    expect(targetUrl(target, operation)).toBe(`${entityUrl(target)}/KeyValue.Get`);
  });

  it("hashes origin, target, operation and message as upper-case hex SHA-256", () => {
    const h = invocationHash("a", "b", "c", Buffer.from("d"));
    expect(h).toBe(createHash("sha256").update("abcd").digest("hex").toUpperCase());
  });
});

describe("verifyInvocation", () => {
  it("accepts an invocation signed by an independent implementation of the format", () => {
    const result = verify(forged());
    expect(result.reasons).toEqual([]);
    expect(result.valid).toBe(true);
    expect(result.claims?.jti).toBe("a-token-id");
  });

  it("accepts one made by signInvocation, and the independent URLs agree with the project's", () => {
    const signer = createSigner(generateKey("C").seed, "C");
    const inv = signInvocation({ origin, target, operation, msg, hostId: host }, signer, { now: NOW });
    expect(verify(inv, [signer.publicKey]).reasons).toEqual([]);
    expect(entityUrl(target)).toBe(independent.url(target));
  });

  it("skips the hash only for an empty message", () => {
    const empty = forged(setWascap("hash", "NOT A HASH"), {
      invocation: { msg: new Uint8Array(0) },
    });
    expect(codes(empty)).toEqual([]);
  });

  const corpus: Array<[string, () => InvocationV1, string[], string[]?]> = [
    [
      "an issuer not listed",
      () => forged(),
      [InvocationReason.UnknownIssuer],
      [independent.clusterKey().publicKey],
    ],
    [
      "claims signed by another key than their issuer",
      () => forged(() => {}, { key: independent.clusterKey().privateKey }),
      [InvocationReason.BadSignature],
    ],
    [
      "a signature that is not the token's",
      () => {
        const inv = forged();
        const [h, c] = inv.encoded_claims.split(".");
        const other = forged(setClaim("jti", "another")).encoded_claims.split(".")[2];
        return { ...inv, encoded_claims: `${h}.${c}.${other}` };
      },
      [InvocationReason.BadSignature],
    ],
    [
      "another algorithm in the header",
      () => forged(() => {}, { header: { typ: "jwt", alg: "HS256" } }),
      [InvocationReason.WrongAlgorithm],
    ],
    [
      "the right fields in another order",
      () => forged(() => {}, { header: '{"alg":"Ed25519","typ":"jwt"}' }),
      [InvocationReason.WrongAlgorithm],
    ],
    ["an expired token", () => forged(setClaim("exp", NOW_S - 1)), [InvocationReason.Expired]],
    ["a token not valid yet", () => forged(setClaim("nbf", NOW_S + 60)), [InvocationReason.NotYetValid]],
    [
      "claims for another target",
      () => forged(setWascap("target_url", "wasmbus://other/default/V1/Op")),
      [InvocationReason.TargetMismatch],
    ],
    [
      "claims from another origin",
      () => forged(setWascap("origin_url", "wasmbus://MOTHER")),
      [InvocationReason.OriginMismatch],
    ],
    [
      "a message that is not the one signed",
      () => ({ ...forged(), msg: Buffer.from('{"key":"balance"}') }),
      [InvocationReason.HashMismatch],
    ],
    [
      "the signed claims sent to another operation",
      () => ({ ...forged(), operation: "KeyValue.Set" }),
      [InvocationReason.TargetMismatch, InvocationReason.HashMismatch],
    ],
    [
      "a host_id that is a component key",
      () => forged(() => {}, { invocation: { host_id: origin.public_key } }),
      [InvocationReason.HostIdNotHostKey],
    ],
    [
      "a host_id that is no key at all",
      () => forged(() => {}, { invocation: { host_id: "host-1" } }),
      [InvocationReason.HostIdNotHostKey],
    ],
    [
      "claims without their wascap part",
      () =>
        forged((c) => {
          delete c["wascap"];
        }),
      [InvocationReason.MalformedToken],
    ],
    [
      "everything wrong at once",
      () =>
        forged(
          (c) => {
            c["exp"] = NOW_S - 10;
            (c["wascap"] as Record<string, string>)["origin_url"] = "wasmbus://MX";
          },
          { header: { typ: "jwt", alg: "none" }, invocation: { host_id: "x", msg: Buffer.from("y") } },
        ),
      [
        InvocationReason.HostIdNotHostKey,
        InvocationReason.WrongAlgorithm,
        InvocationReason.UnknownIssuer,
        InvocationReason.Expired,
        InvocationReason.OriginMismatch,
        InvocationReason.HashMismatch,
      ],
      [],
    ],
  ];
  for (const [name, make, expected, issuers] of corpus) {
    it(`rejects ${name}: ${expected.join(", ")}`, () => {
      const result = verify(make(), issuers);
      expect(result.valid).toBe(false);
      expect(result.reasons.map((r) => r.code)).toEqual(expected);
      for (const reason of result.reasons) expect(reason.message.length).toBeGreaterThan(10);
    });
  }

  it("rejects every truncation of a valid token as malformed or forged, never valid", () => {
    const token = forged().encoded_claims;
    for (let cut = 0; cut < token.length; cut++) {
      const result = verify({ ...forged(), encoded_claims: token.slice(0, cut) });
      expect(result.valid, `cut at ${cut}`).toBe(false);
      expect(
        result.reasons.some(
          (r) => r.code === InvocationReason.MalformedToken || r.code === InvocationReason.BadSignature,
        ),
        `cut at ${cut}: ${JSON.stringify(result.reasons)}`,
      ).toBe(true);
    }
  });

  it("reports garbage tokens as malformed", () => {
    const garbage = [
      "",
      "not a token",
      "a.b.c",
      "....",
      `${independent.b64url(Buffer.from("[]"))}.${independent.b64url(Buffer.from("{}"))}.${"A".repeat(86)}`,
      `${independent.b64url(Buffer.from('{"typ":"jwt","alg":"Ed25519"}'))}.${independent.b64url(Buffer.from("null"))}.${"A".repeat(86)}`,
      Buffer.from(Array.from({ length: 300 }, (_, i) => (i * 37) % 256)).toString("latin1"),
    ];
    for (const token of garbage) {
      expect(codes({ ...forged(), encoded_claims: token }), JSON.stringify(token)).toEqual([
        InvocationReason.MalformedToken,
      ]);
    }
  });
});

describe("a signer's odd claims", () => {
  /** The valid invocation's token with its claims JSON text rewritten by `edit`, signed again. */
  const rewritten = (edit: (text: string) => string): InvocationV1 => {
    const inv = forged();
    const claims = Buffer.from(inv.encoded_claims.split(".")[1]!, "base64url").toString("utf8");
    const text = edit(claims);
    expect(text).not.toBe(claims);
    return {
      ...inv,
      encoded_claims: independent.jwt({ typ: "jwt", alg: "Ed25519" }, text, cluster.privateKey),
    };
  };

  it("refuses a token id given twice: no reader can take one while another takes the other", () => {
    const inv = rewritten((t) => t.replace('"jti":"a-token-id"', '"jti":"a-token-id","jti":"another-id"'));
    const result = verify(inv);
    expect(result.reasons.map((r) => r.code)).toEqual([InvocationReason.MalformedToken]);
    expect(result.reasons[0]?.message).toContain('repeat the key "jti"');
    expect(result.claims).toBeNull();
  });

  it("refuses a hash given twice inside wascap", () => {
    const inv = rewritten((t) => t.replace('"hash":"', '"hash":"00","hash":"'));
    expect(codes(inv)).toEqual([InvocationReason.MalformedToken]);
  });

  const values: Array<[string, string, unknown, InvocationReason[]]> = [
    ["exp as a string", "exp", String(NOW_S + 60), [InvocationReason.MalformedToken]],
    ["exp as a fraction", "exp", NOW_S + 60.5, [InvocationReason.MalformedToken]],
    ["exp beyond 2^53", "exp", 2 ** 60, [InvocationReason.MalformedToken]],
    ["exp of null", "exp", null, [InvocationReason.MalformedToken]],
    ["exp of 0", "exp", 0, [InvocationReason.Expired]],
    ["a negative exp", "exp", -1, [InvocationReason.Expired]],
    ["exp equal to now", "exp", NOW_S, [InvocationReason.Expired]],
    ["nbf as a string", "nbf", "0", [InvocationReason.MalformedToken]],
    ["nbf one second ahead", "nbf", NOW_S + 1, [InvocationReason.NotYetValid]],
    ["iat as a string", "iat", String(NOW_S), [InvocationReason.MalformedToken]],
    ["iat as a fraction", "iat", NOW_S + 0.25, [InvocationReason.MalformedToken]],
    ["iat beyond 2^53", "iat", 2 ** 60, [InvocationReason.MalformedToken]],
    ["an empty jti", "jti", "", [InvocationReason.MalformedToken]],
    ["a numeric jti", "jti", 7, [InvocationReason.MalformedToken]],
    ["iss as an array", "iss", [cluster.publicKey], [InvocationReason.MalformedToken]],
  ];
  for (const [name, key, value, expected] of values) {
    it(`gives ${name} its reason: ${expected.join(", ")}`, () => {
      expect(codes(forged(setClaim(key, value)))).toEqual(expected);
    });
  }

  it("reads a number written with an exponent or too large for a double as malformed, never as no expiry", () => {
    for (const written of ["1e400", "-1e400", "9".repeat(400)]) {
      const inv = rewritten((t) => t.replace('"wascap_revision":3', `"wascap_revision":3,"exp":${written}`));
      expect(codes(inv), written).toEqual([InvocationReason.MalformedToken]);
    }
  });

  it("refuses a header that is the right one but for a repeated key or extra spaces", () => {
    for (const header of [
      '{"typ":"jwt","alg":"Ed25519","alg":"Ed25519"}',
      '{"typ":"jwt", "alg":"Ed25519"}',
      '{"typ":"JWT","alg":"Ed25519"}',
      '{"typ":"jwt","alg":"ed25519"}',
      '{"typ":"jwt","alg":"EdDSA"}',
    ]) {
      expect(codes(forged(() => {}, { header })).length, header).toBeGreaterThan(0);
      expect(verify(forged(() => {}, { header })).valid, header).toBe(false);
    }
  });

  it("refuses a token with unicode look-alikes or more dots", () => {
    const token = forged().encoded_claims;
    for (const bad of [
      `${token}.`,
      `.${token}`,
      token.replace(".", ".."),
      `${token}\u0000`,
      `${token} `,
      `\ufeff${token}`,
    ]) {
      expect(codes({ ...forged(), encoded_claims: bad }), JSON.stringify(bad)).toEqual([
        InvocationReason.MalformedToken,
      ]);
    }
  });
});

describe("invocation codecs", () => {
  it("round-trips an invocation through msgpack and through JSON with msg in base64", () => {
    const inv = forged();
    const packed = parseInvocation(encodeInvocationMsgpack(inv));
    expect(packed.ok && packed.format).toBe("msgpack");
    if (!packed.ok) throw new Error(packed.reason);
    expect(Buffer.from(packed.invocation.msg).equals(msg)).toBe(true);
    expect({ ...packed.invocation, msg: null }).toEqual({ ...inv, msg: null, traceContext: {} });
    expect(verify(packed.invocation).valid).toBe(true);
    const json = parseInvocation(Buffer.from(`  ${JSON.stringify(invocationToJson(inv))}`));
    expect(json.ok && json.format).toBe("json");
    if (json.ok) expect(verify(json.invocation).valid).toBe(true);
  });

  it("reads a msgpack msg written as an array of byte values, as rmp-serde writes a plain Vec<u8>", () => {
    const inv = forged();
    const packed = encodeMsgpack({ ...invocationToJson(inv), msg: [...msg] });
    const parsed = parseInvocation(packed);
    if (!parsed.ok) throw new Error(parsed.reason);
    expect(Buffer.from(parsed.invocation.msg).equals(msg)).toBe(true);
    expect(verify(parsed.invocation).valid).toBe(true);
  });

  it("reads a msg of many megabytes in base64, and refuses one that is not, without throwing", () => {
    const inv = invocationToJson(forged());
    for (const [msg, ok] of [
      ["A".repeat(16_000_000), true],
      [`${"A".repeat(16_000_000)}B`, false],
      [`${"A".repeat(16_000_000)}==`, false],
      [`${"A".repeat(15_999_998)}A=`, true],
      [`${"A".repeat(15_999_998)}=A`, false],
    ] as const) {
      const parsed = parseInvocation(Buffer.from(JSON.stringify({ ...inv, msg })));
      expect(parsed.ok, `${msg.length} characters ending ${msg.slice(-3)}`).toBe(ok);
      if (!parsed.ok) expect(parsed.reason).toContain("base64");
    }
  });

  it.each([
    ["padding in the middle", "aGk=aGk="],
    ["a single trailing character", "aGkhA"],
    ["three padding characters", "aG==="],
    ["url-safe characters", "aG-_"],
    ["spaces", "aG k"],
  ])("refuses a msg with %s", (_name, msg) => {
    const parsed = parseInvocation(Buffer.from(JSON.stringify({ ...invocationToJson(forged()), msg })));
    expect(parsed).toMatchObject({ ok: false, reason: expect.stringContaining("base64") });
  });

  it("never throws on mutations of a msgpack invocation, and accepts none that changes what was signed", () => {
    const packed = encodeInvocationMsgpack(forged());
    let seed = 7;
    const random = (n: number) => {
      seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
      return seed % n;
    };
    for (let i = 0; i < 3000; i++) {
      const bytes = Uint8Array.from(packed);
      for (let k = 0; k <= random(4); k++) bytes[random(bytes.length)] = random(256);
      const parsed = parseInvocation(bytes);
      if (!parsed.ok) continue;
      const result = verify(parsed.invocation);
      if (result.valid) {
        // Only a change the format ignores may keep it valid: the id, content_length, traceContext.
        const { id, content_length, traceContext, ...signed } = parsed.invocation;
        const { id: _i, content_length: _c, traceContext: _t, ...original } = forged();
        expect({ ...signed, msg: Buffer.from(signed.msg) }).toEqual({
          ...original,
          msg: Buffer.from(original.msg),
        });
      }
    }
  });

  it("never hangs or throws on msgpack that announces more than it holds, or nests deeply", () => {
    for (const bytes of [
      [0xdd, 0xff, 0xff, 0xff, 0xff],
      [0xdf, 0xff, 0xff, 0xff, 0xff],
      [0xc6, 0xff, 0xff, 0xff, 0xff],
      [0xdb, 0xff, 0xff, 0xff, 0xff],
      [...new Array(100_000).fill(0x91), 0xc0],
      [...new Array(100_000).fill(0x81).flatMap((b) => [b, 0xa0]), 0xc0],
    ]) {
      expect(parseInvocation(Uint8Array.from(bytes))).toMatchObject({ ok: false });
    }
  });

  it("says what is wrong with bytes that are no invocation", () => {
    expect(parseInvocation(Buffer.from('{"msg": 3}'))).toMatchObject({
      ok: false,
      reason: expect.stringContaining("base64"),
    });
    expect(parseInvocation(Buffer.from('{"msg": "aGk="}'))).toMatchObject({
      ok: false,
      reason: expect.stringContaining("origin"),
    });
    expect(parseInvocation(Buffer.from([0xc1]))).toMatchObject({ ok: false });
    expect(parseInvocation(Buffer.from('{"trunc'))).toMatchObject({
      ok: false,
      reason: expect.stringContaining("JSON"),
    });
  });
});
