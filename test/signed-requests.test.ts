import { once } from "node:events";
import { createConnection } from "node:net";
import { createHostPolicyClient } from "@arbiter/host";
import { DecisionV1, PolicyResponseV1, type StartProviderBodyV1 } from "@arbiter/protocol";
import { parseRulesDocument } from "@arbiter/rules";
import { openJetStreamReplayGuard, type ReplayGuard, StoreUnavailableError } from "@arbiter/store";
import {
  createSigner,
  generateKey,
  POLICY_INVOCATION_HEADER,
  type Signer,
  signPolicyRequest,
} from "@arbiter/trust";
import { createWorker, type Worker } from "@arbiter/worker";
import { DiscardPolicy, jetstreamManager, type StreamConfig } from "@nats-io/jetstream";
import { createInbox, headers, type Msg, type NatsConnection, nanos } from "@nats-io/nats-core";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectTo, until } from "./harness/index.js";
import { configuredWorkerKey, type SingleNodeArbiter, startSingleNodeArbiter } from "./support/arbiter.js";
import { fixtureJson } from "./support/fixtures.js";

const TOPIC = "wasmcloud.policy";
const provider = fixtureJson("start-provider") as ReturnType<typeof fixtureJson> & {
  host: { publicKey: string; lattice: string; labels: Record<string, string> };
  request: StartProviderBodyV1;
};

let counter = 0;
/** The start-provider fixture (permitted by the example rules) under a fresh request id. */
function request(): { requestId: string; bytes: Uint8Array } {
  const requestId = `signed-${process.pid}-${++counter}`;
  return { requestId, bytes: Buffer.from(JSON.stringify({ ...provider, requestId })) };
}

/** The token a sidecar of the fixture's host would attach to `bytes`. */
function token(
  bytes: Uint8Array,
  signer: Signer,
  about: { hostKey?: string; kind?: string; now?: Date; jti?: string; topic?: string } = {},
): string {
  return signPolicyRequest(
    {
      hostKey: about.hostKey ?? provider.host.publicKey,
      lattice: provider.host.lattice,
      policyTopic: about.topic ?? TOPIC,
      kind: about.kind ?? "startProvider",
      request: bytes,
    },
    signer,
    { ...(about.now ? { now: about.now } : {}), ...(about.jti ? { jti: about.jti } : {}) },
  );
}

async function ask(
  nc: NatsConnection,
  bytes: Uint8Array,
  signature?: string,
  options: { topic?: string; timeout?: number } = {},
): Promise<PolicyResponseV1> {
  const h = headers();
  if (signature !== undefined) h.set(POLICY_INVOCATION_HEADER, signature);
  const reply = await nc.request(options.topic ?? TOPIC, bytes, {
    timeout: options.timeout ?? 5000,
    headers: h,
  });
  return PolicyResponseV1.parse(JSON.parse(reply.string()));
}

/** Every recorded decision on `requestId`, waiting until there are at least `count`. */
async function recorded(arbiter: SingleNodeArbiter, requestId: string, count = 1): Promise<DecisionV1[]> {
  return until(
    async () => {
      const found: DecisionV1[] = [];
      for await (const stored of arbiter.store.decisions.read()) {
        const decision = DecisionV1.parse(JSON.parse(stored.text));
        if (decision.requestId === requestId) found.push(decision);
      }
      return found.length >= count ? found : null;
    },
    { timeout: 10_000, name: `${count} record(s) of ${requestId}` },
  );
}

/** Publishes a message with `rawHeaders` written as they are, over the NATS protocol itself. */
async function publishRaw(url: string, subject: string, reply: string, rawHeaders: string, body: Uint8Array) {
  const { hostname, port } = new URL(url);
  const socket = createConnection({ host: hostname, port: Number(port) });
  let heard = "";
  socket.on("data", (chunk: Buffer) => {
    heard += chunk.toString();
  });
  try {
    await once(socket, "connect");
    const header = Buffer.from(rawHeaders);
    socket.write(`CONNECT {"verbose":false,"pedantic":false,"headers":true,"protocol":1}\r\n`);
    socket.write(`HPUB ${subject} ${reply} ${header.length} ${header.length + body.length}\r\n`);
    socket.write(Buffer.concat([header, body, Buffer.from("\r\nPING\r\n")]));
    await until(() => heard.includes("PONG"), {
      timeout: 5000,
      name: "the server's PONG after the raw publish",
    });
  } finally {
    socket.destroy();
  }
}

const clusterSeed = generateKey("C").seed;
const cluster = createSigner(clusterSeed, "C");
const stranger = createSigner(generateKey("C").seed, "C");

describe("requestSignatures: required", () => {
  let arbiter: SingleNodeArbiter;

  beforeAll(async () => {
    arbiter = await startSingleNodeArbiter({
      id: "w-required",
      requestSignatures: "required",
      clusterIssuers: [cluster.publicKey],
    });
  });
  afterAll(async () => {
    await arbiter?.stop();
  });

  it("denies an unsigned request with a message, and records it", async () => {
    const { requestId, bytes } = request();
    const answer = await ask(arbiter.nc, bytes);
    expect(answer).toMatchObject({ requestId, permitted: false });
    expect(answer.message).toMatch(/requires signed policy requests: .*Wasmcloud-Invocation.*\(unsigned\)/);
    const [decision] = await recorded(arbiter, requestId);
    expect(decision).toMatchObject({
      permitted: false,
      message: answer.message,
      rejection: answer.message,
      decidingRule: null,
      cacheKey: expect.stringContaining("startProvider"),
      trust: { verified: false, signed: false, reasons: ["unsigned"], issuer: null, tokenId: null },
    });
  });

  it("decides a request signed by the reference host client, recording who signed it", async () => {
    const host = createHostPolicyClient({
      nc: arbiter.nc,
      host: provider.host,
      changesTopic: null,
      timeoutMs: 5000,
      clusterSeed,
    });
    const answer = await host.evaluateStartProvider(provider.request);
    expect(answer).toMatchObject({ permitted: true, message: "signed by wasmCloud" });
    const [decision] = await recorded(arbiter, answer.requestId!);
    expect(decision?.trust).toMatchObject({
      verified: true,
      signed: true,
      reasons: [],
      issuer: cluster.publicKey,
      tokenId: expect.stringMatching(/^[0-9a-f]{32}$/),
    });
    expect(decision?.rejection).toBeNull();
  });

  const forgeries: Array<[string, () => { bytes: Uint8Array; requestId: string; header: string }, string[]]> =
    [
      [
        "signed by a cluster key that is not an issuer",
        () => {
          const r = request();
          return { ...r, header: token(r.bytes, stranger) };
        },
        ["unknown-issuer"],
      ],
      [
        "a token for other bytes",
        () => {
          const r = request();
          return { ...r, header: token(request().bytes, cluster) };
        },
        ["hash-mismatch"],
      ],
      [
        "a token another host made",
        () => {
          const r = request();
          return { ...r, header: token(r.bytes, cluster, { hostKey: generateKey("N").publicKey }) };
        },
        ["origin-mismatch", "hash-mismatch"],
      ],
      [
        "a token for another kind of request",
        () => {
          const r = request();
          return { ...r, header: token(r.bytes, cluster, { kind: "startComponent" }) };
        },
        ["target-mismatch", "hash-mismatch"],
      ],
      [
        "a token issued two minutes ago",
        () => {
          const r = request();
          return { ...r, header: token(r.bytes, cluster, { now: new Date(Date.now() - 120_000) }) };
        },
        ["too-old"],
      ],
      [
        "a token issued an hour from now",
        () => {
          const r = request();
          return { ...r, header: token(r.bytes, cluster, { now: new Date(Date.now() + 3_600_000) }) };
        },
        ["issued-in-the-future"],
      ],
      ["garbage", () => ({ ...request(), header: "not.a.token" }), ["malformed-token"]],
    ];
  for (const [name, make, reasons] of forgeries) {
    it(`denies and records a forged request: ${name}`, async () => {
      const { bytes, requestId, header } = make();
      const answer = await ask(arbiter.nc, bytes, header);
      expect(answer.permitted).toBe(false);
      expect(answer.message).toMatch(/^the request's signature is not valid: /);
      for (const reason of reasons) expect(answer.message).toContain(`(${reason})`);
      const [decision] = await recorded(arbiter, requestId);
      expect(decision?.trust).toMatchObject({ verified: false, signed: true, reasons });
      expect(decision?.rejection).toBe(answer.message);
    });
  }

  it("denies a request carrying several tokens, however their header names are written", async () => {
    const { requestId, bytes } = request();
    for (const second of [POLICY_INVOCATION_HEADER, "wasmcloud-invocation", "WASMCLOUD-INVOCATION"]) {
      const h = headers();
      h.append(POLICY_INVOCATION_HEADER, token(bytes, cluster));
      h.append(second, "not.a.token");
      const reply = await arbiter.nc.request(TOPIC, bytes, { timeout: 5000, headers: h });
      const answer = PolicyResponseV1.parse(JSON.parse(reply.string()));
      expect(answer.permitted).toBe(false);
      expect(answer.message).toMatch(/2 Wasmcloud-Invocation headers.*\(malformed-token\)/);
    }
    const decisions = await recorded(arbiter, requestId, 3);
    expect(decisions.map((d) => d.trust.reasons)).toEqual([
      ["malformed-token"],
      ["malformed-token"],
      ["malformed-token"],
    ]);
  });

  it("reads the token under its header name in any case", async () => {
    const { requestId, bytes } = request();
    const h = headers();
    h.set("wasmcloud-invocation", token(bytes, cluster));
    const reply = await arbiter.nc.request(TOPIC, bytes, { timeout: 5000, headers: h });
    expect(PolicyResponseV1.parse(JSON.parse(reply.string())).permitted).toBe(true);
    const [decision] = await recorded(arbiter, requestId);
    expect(decision?.trust).toMatchObject({ verified: true, signed: true });
  });

  it("denies and records a request whose headers cannot be read, as any client may write them", async () => {
    const { requestId, bytes } = request();
    const inbox = createInbox();
    const sub = arbiter.nc.subscribe(inbox, { max: 1 });
    await arbiter.nc.flush();
    // nats.js refuses to write a header name with a space; the server passes it on as sent.
    await publishRaw(arbiter.server.url, TOPIC, inbox, "NATS/1.0\r\nBad Name: x\r\n\r\n", bytes);
    let reply: Msg | undefined;
    for await (const m of sub) reply = m;
    const answer = PolicyResponseV1.parse(JSON.parse(reply!.string()));
    expect(answer).toMatchObject({ requestId, permitted: false });
    expect(answer.message).toMatch(/headers cannot be read.*\(malformed-token\)/);
    const [decision] = await recorded(arbiter, requestId);
    expect(decision?.trust).toMatchObject({ verified: false, signed: true, reasons: ["malformed-token"] });
  });

  it("refuses to start with no cluster issuers", () => {
    expect(() =>
      createWorker({
        nc: arbiter.nc,
        config: { requestSignatures: "required" },
        logger: pino({ level: "silent" }),
      }),
    ).toThrow(/clusterIssuers: requestSignatures is required but no cluster issuers/);
  });
});

describe("a replayed token", () => {
  let arbiter: SingleNodeArbiter;
  const config = { requestSignatures: "required" as const, clusterIssuers: [cluster.publicKey] };
  const others: Worker[] = [];

  beforeAll(async () => {
    arbiter = await startSingleNodeArbiter({ id: "w-first", ...config });
  });
  afterAll(async () => {
    for (const w of others) await w.stop();
    await arbiter?.stop();
  });

  async function startWorker(id: string, queueGroup?: string): Promise<Worker> {
    const nc = await connectTo(arbiter.server.url);
    const worker = createWorker({
      nc,
      logger: pino({ level: "silent" }),
      config: {
        id,
        ...config,
        ...configuredWorkerKey(),
        adminKeys: [arbiter.signer.publicKey],
        ...(queueGroup ? { queueGroup } : {}),
      },
    });
    await worker.start();
    others.push(worker);
    return worker;
  }

  it("is refused by another worker than the one that saw it first", async () => {
    const { requestId, bytes } = request();
    const header = token(bytes, cluster);
    expect((await ask(arbiter.nc, bytes, header)).permitted).toBe(true);
    await arbiter.worker.stop();
    const second = await startWorker("w-second");
    await second.waitForRevision(1);
    // Not answered: a replay's sender gets nothing, and a host whose own request came second
    // fails closed without caching a denial.
    await expect(ask(arbiter.nc, bytes, header, { timeout: 1500 })).rejects.toThrow(/timeout/i);
    const decisions = await recorded(arbiter, requestId, 2);
    expect(decisions.map((d) => [d.worker.id, d.permitted, d.trust.reasons])).toEqual([
      ["w-first", true, []],
      ["w-second", false, ["replayed"]],
    ]);
    expect(decisions[1]?.rejection).toMatch(/\(replayed\); not answered$/);
    expect(second.stats()).toMatchObject({ replayed: 1 });
  });

  it("sent first by someone who copied it leaves the host's own request unanswered, not a cached denial", async () => {
    const { requestId, bytes } = request();
    const header = token(bytes, cluster);
    const attacker = await connectTo(arbiter.server.url);
    try {
      const stolen = await ask(attacker, bytes, header);
      expect(stolen.permitted).toBe(true);
      const host = await connectTo(arbiter.server.url);
      try {
        await expect(ask(host, bytes, header, { timeout: 1500 })).rejects.toThrow(/timeout/i);
      } finally {
        await host.close();
      }
      const decisions = await recorded(arbiter, requestId, 2);
      expect(decisions.map((d) => d.trust.reasons)).toEqual([[], ["replayed"]]);
    } finally {
      await attacker.close();
    }
  });

  it("is permitted by exactly one of the workers that receive it at once", async () => {
    // Two more queue groups on the topic: the request reaches three workers at the same moment.
    await startWorker("w-group-a", "group-a");
    await startWorker("w-group-b", "group-b");
    const { requestId, bytes } = request();
    await ask(arbiter.nc, bytes, token(bytes, cluster));
    const decisions = await recorded(arbiter, requestId, 3);
    expect(new Set(decisions.map((d) => d.worker.id))).toEqual(
      new Set(["w-second", "w-group-a", "w-group-b"]),
    );
    expect(decisions.filter((d) => d.permitted)).toHaveLength(1);
    expect(decisions.filter((d) => !d.permitted).map((d) => d.trust.reasons)).toEqual([
      ["replayed"],
      ["replayed"],
    ]);
  });
});

describe("signatures off: unreadable headers, and replay buckets made by someone else", () => {
  let arbiter: SingleNodeArbiter;

  beforeAll(async () => {
    arbiter = await startSingleNodeArbiter({ id: "w-bucket" });
  });
  afterAll(async () => {
    await arbiter?.stop();
  });

  /** Creates `KV_{prefix}-replay` as someone allowed to create streams could, before any worker. */
  async function planted(prefix: string, config: Partial<StreamConfig>): Promise<void> {
    const jsm = await jetstreamManager(arbiter.nc);
    await jsm.streams.add({
      name: `KV_${prefix}-replay`,
      subjects: [`$KV.${prefix}-replay.>`],
      max_msgs_per_subject: 1,
      discard: DiscardPolicy.New,
      allow_rollup_hdrs: true,
      ...config,
    });
  }

  it.each([
    ["forgets token ids after a second", "short", { max_age: nanos(1000) }],
    ["keeps only the last token id", "tiny", { max_msgs: 1, discard: DiscardPolicy.Old }],
    ["keeps a few bytes of token ids", "small", { max_bytes: 512, discard: DiscardPolicy.Old }],
  ] as const)("a replay bucket is refused when it %s: replays would pass", async (_name, prefix, config) => {
    await planted(prefix, config);
    await expect(openJetStreamReplayGuard(arbiter.nc, { prefix, windowMs: 65_000 })).rejects.toThrow(
      new RegExp(`${prefix}-replay`),
    );
  });

  it("answers a request whose headers cannot be read as any other, as no header is read", async () => {
    const { requestId, bytes } = request();
    const inbox = createInbox();
    const sub = arbiter.nc.subscribe(inbox, { max: 1 });
    await arbiter.nc.flush();
    await publishRaw(arbiter.server.url, TOPIC, inbox, "NATS/1.0\r\nBad Name: x\r\n\r\n", bytes);
    let reply: Msg | undefined;
    for await (const m of sub) reply = m;
    expect(PolicyResponseV1.parse(JSON.parse(reply!.string()))).toMatchObject({ requestId, permitted: true });
    expect((await ask(arbiter.nc, request().bytes)).permitted).toBe(true);
  });

  it("a replay bucket is used when it remembers token ids at least as long as they are accepted", async () => {
    await planted("long", { max_age: nanos(3_600_000) });
    const guard = await openJetStreamReplayGuard(arbiter.nc, { prefix: "long", windowMs: 65_000 });
    try {
      expect(await guard.claim("t-1")).toBe(true);
      expect(await guard.claim("t-1")).toBe(false);
    } finally {
      guard.close();
    }
  });
});

describe("requestSignatures: verify-if-present", () => {
  let arbiter: SingleNodeArbiter;

  beforeAll(async () => {
    arbiter = await startSingleNodeArbiter({
      id: "w-present",
      requestSignatures: "verify-if-present",
      clusterIssuers: [cluster.publicKey],
    });
  });
  afterAll(async () => {
    await arbiter?.stop();
  });

  it("lets an unsigned request through to the rules and denies a forged one", async () => {
    const unsigned = request();
    expect(await ask(arbiter.nc, unsigned.bytes)).toMatchObject({ permitted: true });
    const [decision] = await recorded(arbiter, unsigned.requestId);
    expect(decision?.trust).toMatchObject({ verified: false, signed: false, reasons: ["unsigned"] });
    expect(decision?.rejection).toBeNull();
    const forged = request();
    const answer = await ask(arbiter.nc, forged.bytes, token(forged.bytes, stranger));
    expect(answer.permitted).toBe(false);
    expect(answer.message).toContain("(unknown-issuer)");
  });

  it("shows the rules the trust result", async () => {
    const { revision } = await arbiter.admin.apply(
      parseRulesDocument(`
version: 1
default: allow
rules:
  - id: signed-by-our-cluster
    effect: deny
    when: '!trust.verified || trust.issuer != "${cluster.publicKey}" || trust.tokenId == null'
    message: only signed requests
`),
    );
    await arbiter.worker.waitForRevision(revision);
    const unsigned = request();
    expect(await ask(arbiter.nc, unsigned.bytes)).toMatchObject({
      permitted: false,
      message: "only signed requests",
    });
    const signed = request();
    expect(await ask(arbiter.nc, signed.bytes, token(signed.bytes, cluster))).toMatchObject({
      permitted: true,
    });
  });
});

describe("a replay bucket that does not answer", () => {
  let arbiter: SingleNodeArbiter;
  const workers: Worker[] = [];
  const down: ReplayGuard = {
    claim: async () => {
      throw new StoreUnavailableError("the replay bucket is gone");
    },
    close: () => {},
  };

  beforeAll(async () => {
    arbiter = await startSingleNodeArbiter({ id: "w-off" });
  });
  afterAll(async () => {
    for (const w of workers) await w.stop();
    await arbiter?.stop();
  });

  async function workerOn(topic: string, onLogOutage: "silent" | "deny"): Promise<Worker> {
    const worker = createWorker({
      nc: arbiter.nc,
      logger: pino({ level: "silent" }),
      replayGuard: down,
      config: {
        id: `w-${onLogOutage}`,
        ...configuredWorkerKey(),
        policyTopic: topic,
        requestSignatures: "required",
        clusterIssuers: [cluster.publicKey],
        adminKeys: [arbiter.signer.publicKey],
        onLogOutage,
      },
    });
    await worker.start();
    workers.push(worker);
    return worker;
  }

  it("leaves a valid signed request unanswered (hosts fail closed without caching), or denies it with onLogOutage deny", async () => {
    const silent = await workerOn("policy.silent", "silent");
    const quiet = request();
    await expect(
      ask(arbiter.nc, quiet.bytes, token(quiet.bytes, cluster, { topic: "policy.silent" }), {
        topic: "policy.silent",
        timeout: 1500,
      }),
    ).rejects.toThrow(/timeout|TIMEOUT/i);
    expect(silent.stats()).toMatchObject({ unansweredReplayUnchecked: 1, decisions: 0 });

    await workerOn("policy.deny", "deny");
    const denied = request();
    const answer = await ask(
      arbiter.nc,
      denied.bytes,
      token(denied.bytes, cluster, { topic: "policy.deny" }),
      {
        topic: "policy.deny",
      },
    );
    expect(answer.permitted).toBe(false);
    expect(answer.message).toContain("(replay-unchecked)");
    const [decision] = await recorded(arbiter, denied.requestId);
    expect(decision?.trust.reasons).toEqual(["replay-unchecked"]);
  });
});
