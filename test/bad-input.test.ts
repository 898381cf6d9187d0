import { DecisionV1, decodePolicyRequest, PolicyResponseV1 } from "@arbiter/protocol";
import { compileRules, initialRulesetState, parseRulesDocument, type RulesetState } from "@arbiter/rules";
import { createRulesAdmin, openJetStreamStore } from "@arbiter/store";
import { createSigner, generateKey } from "@arbiter/trust";
import { createWorker, decideRequest, type Worker } from "@arbiter/worker";
import { createInbox, type NatsConnection, type Subscription } from "@nats-io/nats-core";
import fc from "fast-check";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectTo, type NatsServerProcess, startNatsServer, until } from "./harness/index.js";
import { configuredWorkerKey } from "./support/arbiter.js";
import {
  BAD_INPUTS,
  type BadInput,
  MAX_PAYLOAD_BYTES,
  MAX_REQUEST_ID_LENGTH,
  ODD_BUT_VALID_INPUTS,
} from "./support/bad-inputs.js";
import { exampleRulesText, FIXTURES, fixtureBytes, fixtureJson } from "./support/fixtures.js";

// The product promise under test (DESIGN.md §7): bad input never crashes a worker and never goes
// unanswered when it carries a request id; it gets `permitted: false` and a message that says what
// was wrong; the worker keeps serving; and every answer to a request id is in the decision stream.

const POLICY_TOPIC = "wasmcloud.policy";
const REPLY_TIMEOUT_MS = 5000;
/** Fuzz runs: each is one request of about 1 ms; the whole file stays well under a minute. */
const MUTATION_RUNS = 2000;
const BYTE_RUNS = 1000;
const HOST_KEY = "NBLSJGGOETB677FQL63PWKDCVMOW4LXVI7S6WXSP55H7L5RNRKUDZKGE";
/** A message names the problem without echoing the payload: at most 1024 characters of reason. */
const MAX_MESSAGE_LENGTH = 1024;
const RESPONSE_KEYS = ["message", "permitted", "requestId"];
const silent = pino({ level: "silent" });
const encoder = new TextEncoder();
const decoder = new TextDecoder();

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type FixtureName = (typeof FIXTURES)[number]["name"];
const FIXTURE_NAMES = FIXTURES.map((f) => f.name);

/** The answer as the host would decode it, checked to carry exactly the three response fields. */
function parseAnswer(data: Uint8Array): PolicyResponseV1 {
  const json: unknown = JSON.parse(decoder.decode(data));
  expect(Object.keys(json as object).sort()).toEqual(RESPONSE_KEYS);
  return PolicyResponseV1.parse(json);
}

/** What a rejected payload must be answered with, computed by the same edge decoder. */
function rejectionAnswer(bytes: Uint8Array): PolicyResponseV1 | null {
  const decoded = decodePolicyRequest(bytes, { maxBytes: MAX_PAYLOAD_BYTES });
  if (decoded.ok) return null;
  return { requestId: decoded.requestId ?? "", permitted: false, message: decoded.reason };
}

describe("bad input on the policy topic", () => {
  let server: NatsServerProcess;
  /** The hosts' side. */
  let nc: NatsConnection;
  /** The worker's own connection, as in production. */
  let workerNc: NatsConnection;
  let worker: Worker;
  const admin = createSigner(generateKey("O").seed);
  const rules: RulesetState = (() => {
    const document = parseRulesDocument(exampleRulesText());
    return {
      ...initialRulesetState(),
      revision: 2,
      document,
      compiled: compileRules(document),
      documentRevision: 2,
    };
  })();

  beforeAll(async () => {
    server = await startNatsServer();
    nc = await connectTo(server.url);
    workerNc = await connectTo(server.url);
    const store = await openJetStreamStore(nc);
    await createRulesAdmin({ store, signer: admin }).apply(parseRulesDocument(exampleRulesText()));
    worker = createWorker({
      nc: workerNc,
      config: {
        adminKeys: [admin.publicKey],
        id: "bad-input",
        maxPayloadBytes: MAX_PAYLOAD_BYTES,
        ...configuredWorkerKey(),
      },
      logger: silent,
    });
    await worker.start();
  });

  afterAll(async () => {
    await worker?.stop();
    await workerNc?.close();
    await nc?.close();
    await server?.stop();
  });

  const ask = async (bytes: Uint8Array): Promise<PolicyResponseV1> =>
    parseAnswer((await nc.request(POLICY_TOPIC, bytes, { timeout: REPLY_TIMEOUT_MS })).data);

  it("has a corpus of at least 100 distinctly named bad payloads", () => {
    expect(BAD_INPUTS.length).toBeGreaterThanOrEqual(100);
    const names = [...BAD_INPUTS, ...ODD_BUT_VALID_INPUTS].map((c) => c.name);
    expect(new Set(names).size).toBe(names.length);
    const ids = BAD_INPUTS.flatMap((c) => (c.requestId === null ? [] : [c.requestId]));
    expect(new Set(ids).size, "each case has its own request id, so it has its own decision").toBe(
      ids.length,
    );
    expect(worker.status).toBe("ready");
    expect(worker.revision).toBe(2);
  });

  it.for(BAD_INPUTS)("denies and explains: $name", async (c: BadInput) => {
    const answer = await ask(c.bytes);
    expect(answer.requestId).toBe(c.requestId ?? "");
    expect(answer.permitted).toBe(false);
    expect(answer.message).toMatch(c.expect);
    expect(answer.message!.length).toBeLessThanOrEqual(MAX_MESSAGE_LENGTH);
  });

  it.for(ODD_BUT_VALID_INPUTS)("accepts what is odd but valid: $name", async (c) => {
    const answer = await ask(c.bytes);
    expect(answer).toEqual({
      requestId: c.requestId,
      permitted: c.permitted,
      message: expect.stringMatching(c.expect),
    });
  });

  it("is still ready after the corpus and answers the real requests as the rules say", async () => {
    expect(worker.status).toBe("ready");
    for (const fixture of FIXTURES) {
      const answer = await ask(fixtureBytes(fixture.name));
      expect(answer.requestId).toBe(fixtureJson(fixture.name).requestId);
      expect(answer.permitted, fixture.name).toBe(fixture.permitted);
    }
    const stats = worker.stats();
    expect(stats.logFailures, "answers that could not be recorded").toBe(0);
    expect(stats.rejected).toBe(BAD_INPUTS.length);
    expect(stats.unanswerable).toBe(0);
  });

  it("records every answered rejection in the decision stream, denied, with the reason", async () => {
    const store = await openJetStreamStore(nc);
    const byRequest = new Map<string, DecisionV1[]>();
    for await (const stored of store.decisions.read()) {
      const decision = DecisionV1.parse(JSON.parse(stored.text));
      byRequest.set(decision.requestId, [...(byRequest.get(decision.requestId) ?? []), decision]);
    }
    const withoutId = BAD_INPUTS.filter((c) => c.requestId === null);
    expect(
      byRequest.get("")?.length,
      'rejections without a request id, recorded with id ""',
    ).toBeGreaterThanOrEqual(withoutId.length);
    for (const c of BAD_INPUTS) {
      if (c.requestId === null) continue;
      const decisions = byRequest.get(c.requestId) ?? [];
      expect(decisions, `decisions for "${c.name}"`).toHaveLength(1);
      const [decision] = decisions;
      expect(decision!.permitted, c.name).toBe(false);
      expect(decision!.rejection, c.name).toMatch(c.expect);
      expect(decision!.message, c.name).toBe(decision!.rejection);
      expect(decision!.worker.id).toBe("bad-input");
      if (/nested deeper than/.test(decision!.rejection ?? "")) {
        // Recorded cut at the depth limit (the whole value cannot be serialized), host still known.
        expect(decision!.host, c.name).toBe(HOST_KEY);
        expect(JSON.stringify(decision!.request).length, c.name).toBeLessThan(MAX_PAYLOAD_BYTES);
      }
    }
    for (const c of ODD_BUT_VALID_INPUTS) {
      const decisions = byRequest.get(c.requestId) ?? [];
      expect(decisions, `decisions for "${c.name}"`).toHaveLength(1);
      expect(decisions[0]).toMatchObject({ rejection: null, permitted: c.permitted, revision: 2 });
    }
  });

  it("answers the whole corpus sent at once, each request correctly", async () => {
    const answers = await Promise.all(BAD_INPUTS.map((c) => ask(c.bytes)));
    answers.forEach((answer, i) => {
      const c = BAD_INPUTS[i]!;
      expect(answer, c.name).toEqual({
        requestId: c.requestId ?? "",
        permitted: false,
        message: expect.stringMatching(c.expect),
      });
    });
    expect(worker.status).toBe("ready");
  });

  it("survives bad input sent without a reply subject (nothing to answer) and keeps serving", async () => {
    const before = worker.stats().unanswerable;
    for (const c of BAD_INPUTS) nc.publish(POLICY_TOPIC, c.bytes);
    await until(() => worker.stats().unanswerable === before + BAD_INPUTS.length, {
      name: "the worker to count every request sent without a reply subject",
    });
    expect(worker.status).toBe("ready");
    const answer = await ask(fixtureBytes("perform-invocation"));
    expect(answer).toMatchObject({ requestId: fixtureJson("perform-invocation").requestId, permitted: true });
  });

  describe("fuzzing", () => {
    const replies = new Map<string, number>();
    const waiting = new Map<string, (data: Uint8Array) => void>();
    let inbox: string;
    let subscription: Subscription;
    let sent = 0;
    /** How the fuzz requests were answered, to show the properties exercised every branch. */
    const outcomes = { decided: 0, rejectedWithId: 0, rejectedWithoutId: 0 };

    beforeAll(async () => {
      inbox = createInbox();
      subscription = nc.subscribe(`${inbox}.*`, {
        callback: (err, msg) => {
          if (err) return;
          replies.set(msg.subject, (replies.get(msg.subject) ?? 0) + 1);
          waiting.get(msg.subject)?.(msg.data);
          waiting.delete(msg.subject);
        },
      });
      await nc.flush();
    });

    afterAll(() => subscription?.unsubscribe());

    /** Sends on the policy topic with a reply subject of its own, so every reply can be counted. */
    const send = (bytes: Uint8Array): Promise<PolicyResponseV1> => {
      const reply = `${inbox}.${++sent}`;
      return new Promise<Uint8Array>((resolve, reject) => {
        const timer = setTimeout(() => {
          waiting.delete(reply);
          reject(new Error(`no answer within ${REPLY_TIMEOUT_MS} ms to fuzz request ${reply}`));
        }, REPLY_TIMEOUT_MS);
        waiting.set(reply, (data) => {
          clearTimeout(timer);
          resolve(data);
        });
        nc.publish(POLICY_TOPIC, bytes, { reply });
      }).then(parseAnswer);
    };

    /** Sends `bytes` and checks the answer against the edge decoder and the rules. */
    const check = async (bytes: Uint8Array): Promise<PolicyResponseV1> => {
      const answer = await send(bytes);
      const rejection = rejectionAnswer(bytes);
      if (rejection !== null) {
        if (rejection.requestId === "") outcomes.rejectedWithoutId++;
        else outcomes.rejectedWithId++;
        expect(answer).toEqual(rejection);
        expect(answer.message!.length).toBeLessThanOrEqual(MAX_MESSAGE_LENGTH);
        return answer;
      }
      const decoded = decodePolicyRequest(bytes, { maxBytes: MAX_PAYLOAD_BYTES });
      if (!decoded.ok) throw new Error("unreachable");
      // The example rules do not look at `now`, so the decision is the same whenever it is made.
      const expected = decideRequest(decoded.request, rules, new Date());
      outcomes.decided++;
      expect(answer).toEqual({
        requestId: decoded.request.requestId,
        permitted: expected.permitted,
        message: expected.message,
      });
      return answer;
    };

    /** After a run: the worker is idle, still ready, and every request got exactly one reply. */
    const expectOneReplyEach = async () => {
      await until(() => worker.stats().inFlight === 0, { name: "the worker to finish the fuzz requests" });
      await workerNc.flush();
      await nc.flush();
      for (let n = 1; n <= sent; n++) {
        expect(replies.get(`${inbox}.${n}`) ?? 0, `replies to fuzz request ${n}`).toBe(1);
      }
      expect(worker.status).toBe("ready");
      expect(worker.stats().logFailures).toBe(0);
      const answer = await send(fixtureBytes("start-provider"));
      expect(answer).toMatchObject({ requestId: fixtureJson("start-provider").requestId, permitted: true });
    };

    it("answers mutated real requests once each: denied unless still valid, echoing a valid id", async () => {
      const anyChar = fc.oneof(
        { weight: 6, arbitrary: fc.string({ unit: "binary", minLength: 1, maxLength: 1 }) },
        { weight: 1, arbitrary: fc.integer({ min: 0xd800, max: 0xdfff }).map((c) => String.fromCharCode(c)) },
      );
      const jsonValue = fc.jsonValue({ maxDepth: 4 }) as fc.Arbitrary<Json>;
      const key = fc.oneof(
        fc.string({ maxLength: 12 }),
        fc.constantFrom(
          "__proto__",
          "constructor",
          "prototype",
          "toString",
          "requestId",
          "kind",
          "action",
          "request",
          "host",
          "claims",
          "target",
        ),
      );
      const mutation = fc.oneof(
        fc.record({ op: fc.constant("replace" as const), pick: fc.nat(), value: jsonValue }),
        fc.record({ op: fc.constant("delete" as const), pick: fc.nat() }),
        fc.record({ op: fc.constant("add" as const), pick: fc.nat(), key, value: jsonValue }),
        fc.record({
          op: fc.constant("requestId" as const),
          value: fc.oneof(
            fc.string({ unit: anyChar, maxLength: 40 }),
            fc.string({ unit: anyChar, minLength: 250, maxLength: 262 }),
            jsonValue,
          ),
        }),
      );
      const started = Date.now();
      await fc.assert(
        fc.asyncProperty(
          fc.constantFrom(...FIXTURE_NAMES),
          fc.array(mutation, { minLength: 1, maxLength: 4 }),
          async (name, mutations) => {
            let request: Json = fixtureJson(name) as Json;
            for (const m of mutations) request = applyMutation(request, m);
            const bytes = encoder.encode(JSON.stringify(request));
            const answer = await check(bytes);
            const id = isObject(request) ? request["requestId"] : undefined;
            const validId = typeof id === "string" && id.length >= 1 && id.length <= MAX_REQUEST_ID_LENGTH;
            if (validId && bytes.byteLength <= MAX_PAYLOAD_BYTES) expect(answer.requestId).toBe(id);
            if (decodePolicyRequest(bytes, { maxBytes: MAX_PAYLOAD_BYTES }).ok === false) {
              expect(answer.permitted).toBe(false);
            }
          },
        ),
        { numRuns: MUTATION_RUNS },
      );
      console.info(`fuzz: ${MUTATION_RUNS} mutated requests in ${Date.now() - started} ms`, outcomes);
      expect(outcomes.decided, "mutants still valid, decided by the rules").toBeGreaterThan(
        MUTATION_RUNS / 20,
      );
      expect(outcomes.rejectedWithId, "mutants rejected with their id").toBeGreaterThan(MUTATION_RUNS / 4);
      expect(outcomes.rejectedWithoutId, "mutants rejected without an id").toBeGreaterThan(
        MUTATION_RUNS / 50,
      );
      await expectOneReplyEach();
    });

    it("answers arbitrary bytes and byte-mutated real requests once each, never crashing", async () => {
      const started = Date.now();
      Object.assign(outcomes, { decided: 0, rejectedWithId: 0, rejectedWithoutId: 0 });
      await fc.assert(
        fc.asyncProperty(fc.uint8Array({ maxLength: 2048 }), async (bytes) => {
          await check(bytes);
        }),
        { numRuns: BYTE_RUNS },
      );
      const byteEdit = fc.record({
        op: fc.constantFrom("set", "insert", "delete"),
        at: fc.nat(),
        byte: fc.integer({ min: 0, max: 255 }),
      });
      await fc.assert(
        fc.asyncProperty(
          fc.constantFrom(...FIXTURE_NAMES),
          fc.array(byteEdit, { minLength: 1, maxLength: 4 }),
          async (name: FixtureName, edits) => {
            const bytes = [...fixtureBytes(name)];
            for (const { op, at, byte } of edits) {
              const i = at % (bytes.length + 1);
              if (op === "insert") bytes.splice(i, 0, byte);
              else if (op === "delete") bytes.splice(i, 1);
              else bytes[Math.min(i, bytes.length - 1)] = byte;
            }
            await check(new Uint8Array(bytes));
          },
        ),
        { numRuns: BYTE_RUNS },
      );
      console.info(`fuzz: ${2 * BYTE_RUNS} byte strings in ${Date.now() - started} ms`, outcomes);
      await expectOneReplyEach();
    });
  });
});

type Mutation =
  | { op: "replace"; pick: number; value: Json }
  | { op: "delete"; pick: number }
  | { op: "add"; pick: number; key: string; value: Json }
  | { op: "requestId"; value: Json };

function isObject(value: Json): value is { [key: string]: Json } {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Every path in `root`, the root itself (`[]`) first. */
function pathsOf(root: Json): (string | number)[][] {
  const out: (string | number)[][] = [];
  const walk = (value: Json, path: (string | number)[]) => {
    out.push(path);
    if (Array.isArray(value)) {
      value.forEach((item, i) => {
        walk(item, [...path, i]);
      });
    } else if (isObject(value)) {
      for (const key of Object.keys(value)) walk(value[key]!, [...path, key]);
    }
  };
  walk(root, []);
  return out;
}

function get(root: Json, path: readonly (string | number)[]): Json {
  let node = root;
  for (const step of path) node = (node as Record<string, Json>)[step as string]!;
  return node;
}

/** Sets an own data property, also for a key named `__proto__`. */
function define(target: object, key: string | number, value: Json): void {
  Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true });
}

/** A deep copy that keeps `__proto__` keys as own data (fast-check values are reused across runs). */
function copy(value: Json): Json {
  if (Array.isArray(value)) return value.map(copy);
  if (!isObject(value)) return value;
  const out: { [key: string]: Json } = {};
  for (const key of Object.keys(value)) define(out, key, copy(value[key]!));
  return out;
}

/** Applies one mutation; `pick` chooses the path among those present, modulo their number. */
function applyMutation(root: Json, m: Mutation): Json {
  switch (m.op) {
    case "requestId": {
      if (isObject(root)) define(root, "requestId", copy(m.value));
      return root;
    }
    case "replace": {
      const paths = pathsOf(root);
      const path = paths[m.pick % paths.length]!;
      if (path.length === 0) return copy(m.value);
      define(get(root, path.slice(0, -1)) as object, path.at(-1)!, copy(m.value));
      return root;
    }
    case "delete": {
      const paths = pathsOf(root).slice(1);
      if (paths.length === 0) return root;
      const path = paths[m.pick % paths.length]!;
      const parent = get(root, path.slice(0, -1));
      if (Array.isArray(parent)) parent.splice(path.at(-1) as number, 1);
      else delete (parent as Record<string, Json>)[path.at(-1) as string];
      return root;
    }
    case "add": {
      const containers = pathsOf(root).filter((p) => {
        const node = get(root, p);
        return typeof node === "object" && node !== null;
      });
      if (containers.length === 0) return root;
      const parent = get(root, containers[m.pick % containers.length]!);
      if (Array.isArray(parent)) parent.push(copy(m.value));
      else define(parent as object, m.key, copy(m.value));
      return root;
    }
  }
}
