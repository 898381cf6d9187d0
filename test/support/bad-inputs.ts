import { fixtureJson, legacyStartActor } from "./fixtures.js";

/**
 * A payload the policy topic must refuse: the worker answers it with `permitted: false`, echoes
 * `requestId` (or `""` when the payload carries none that can be found) and a message matching
 * `expect`, which names the problem.
 */
export interface BadInput {
  readonly name: string;
  readonly bytes: Uint8Array;
  /** The id the answer must echo; null when none can be found (the answer then carries `""`). */
  readonly requestId: string | null;
  readonly expect: RegExp;
}

/** A payload that looks suspicious but is a valid request: it gets the rules' real answer. */
export interface OddButValidInput extends BadInput {
  readonly requestId: string;
  readonly permitted: boolean;
}

/** The largest payload the worker under test accepts (it runs with `maxPayloadBytes` set to this). */
export const MAX_PAYLOAD_BYTES = 64 * 1024;

/** The longest request id the decoder accepts. */
export const MAX_REQUEST_ID_LENGTH = 256;

type FixtureName = "start-component" | "start-provider" | "perform-invocation";
type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type JsonObject = { [key: string]: Json };
type Path = readonly (string | number)[];

const encoder = new TextEncoder();
const KINDS = /expected startComponent, startProvider, performInvocation or unknown/;
const NOT_JSON = /^payload is not JSON: /;
const NOT_OBJECT = /^expected a JSON object, got /;
const NOT_UTF8 = /^payload is not valid UTF-8$/;
const TOO_BIG = new RegExp(`exceeds the limit of ${MAX_PAYLOAD_BYTES} bytes$`);
const TOO_DEEP = /: nested deeper than 32 levels$/;
/** Refused before it is parsed: JSON.parse costs ten times more per byte on brackets than on flat text. */
const TOO_MANY = /^payload: more than 10000 JSON values /;
const BAD_ID = /^requestId: expected a string of 1 to 256 characters$/;

/** The answers of the example rules (deploy/rules/example.yaml) to valid requests. */
const ANSWERS: Record<FixtureName, { permitted: boolean; expect: RegExp }> = {
  "start-component": { permitted: false, expect: /^no rule matched; default is deny$/ },
  "start-provider": { permitted: true, expect: /^signed by wasmCloud$/ },
  "perform-invocation": { permitted: true, expect: /^allowed by rule "invocations-are-not-our-concern"$/ },
};

/** A 0.82-format (`action`) request, valid, for a start the example rules permit. */
function legacyRequest(requestId: string): JsonObject {
  return legacyStartActor(requestId);
}

let serial = 0;
/** A fresh request id in the hosts' format (ULID as a hyphenated UUID), unique within the corpus. */
function nextId(): string {
  serial++;
  return `01945242-abec-71ee-f5e6-${serial.toString(16).padStart(12, "0")}`;
}

/** A real fixture request, parsed, with a fresh request id so each case has its own decision. */
function fixture(name: FixtureName = "start-component"): { id: string; value: JsonObject } {
  const id = nextId();
  const value = fixtureJson(name) as JsonObject;
  value["requestId"] = id;
  return { id, value };
}

function at(root: Json, path: Path): { parent: JsonObject | Json[]; key: string | number } {
  let node: Json = root;
  for (const step of path.slice(0, -1)) {
    node = (node as JsonObject)[step as string] as Json;
  }
  return { parent: node as JsonObject, key: path.at(-1)! };
}

/** Sets the value at `path` (creating the key when absent), as own data, also for `__proto__`. */
function set(root: JsonObject, path: Path, value: Json): JsonObject {
  const { parent, key } = at(root, path);
  Object.defineProperty(parent, key, { value, enumerable: true, writable: true, configurable: true });
  return root;
}

function remove(root: JsonObject, path: Path): JsonObject {
  const { parent, key } = at(root, path);
  delete (parent as JsonObject)[key as string];
  return root;
}

function nested(levels: number, leaf: string, shape: "array" | "object"): string {
  return shape === "array"
    ? "[".repeat(levels) + leaf + "]".repeat(levels)
    : '{"a":'.repeat(levels) + leaf + "}".repeat(levels);
}

/** Replaces the placeholder `"@@"` in the JSON text of `value` with raw text (not JSON-encoded). */
function withRaw(value: JsonObject, raw: string): string {
  const text = JSON.stringify(value);
  if (!text.includes('"@@"')) throw new Error("withRaw: placeholder not found");
  return text.replace('"@@"', () => raw);
}

/** Bytes of `text` with `insert` spliced in just before the first occurrence of `marker`. */
function splice(text: string, marker: string, insert: readonly number[]): Uint8Array {
  const index = text.indexOf(marker);
  if (index < 0) throw new Error(`splice: ${marker} not found`);
  const head = encoder.encode(text.slice(0, index));
  const tail = encoder.encode(text.slice(index));
  return new Uint8Array([...head, ...insert, ...tail]);
}

function build(): { bad: BadInput[]; odd: OddButValidInput[] } {
  const bad: BadInput[] = [];
  const odd: OddButValidInput[] = [];
  const add = (name: string, bytes: Uint8Array | string, requestId: string | null, expect: RegExp) => {
    bad.push({ name, bytes: typeof bytes === "string" ? encoder.encode(bytes) : bytes, requestId, expect });
  };
  const addJson = (name: string, value: Json, requestId: string | null, expect: RegExp) => {
    add(name, JSON.stringify(value), requestId, expect);
  };
  /** A fixture with `path` set to `value`, or deleted when `value` is undefined. */
  const mutated = (name: string, from: FixtureName, path: Path, value: Json | undefined, expect: RegExp) => {
    const { id, value: request } = fixture(from);
    addJson(name, value === undefined ? remove(request, path) : set(request, path, value), id, expect);
  };
  /** Like `mutated`, for a mutation that leaves no usable request id (answered with `""`). */
  const mutatedId = (name: string, from: FixtureName, value: Json | undefined) => {
    const { value: request } = fixture(from);
    const expect = value === undefined ? /^requestId: required$/ : BAD_ID;
    addJson(
      name,
      value === undefined ? remove(request, ["requestId"]) : set(request, ["requestId"], value),
      null,
      expect,
    );
  };
  const accept = (name: string, bytes: Uint8Array | string, requestId: string, from: FixtureName) => {
    const bin = typeof bytes === "string" ? encoder.encode(bytes) : bytes;
    odd.push({ name, bytes: bin, requestId, ...ANSWERS[from] });
  };

  // --- Not JSON -----------------------------------------------------------------------------------
  {
    const { id, value } = fixture();
    const text = JSON.stringify(value);
    add("not JSON: truncated in the middle", text.slice(0, text.length >> 1), id, NOT_JSON);
  }
  {
    const { id, value } = fixture("perform-invocation");
    add("not JSON: truncated by one byte", JSON.stringify(value).slice(0, -1), id, NOT_JSON);
  }
  {
    const { id, value } = fixture();
    add("not JSON: truncated right after the request id", JSON.stringify(value).slice(0, 56), id, NOT_JSON);
  }
  {
    const { id, value } = fixture("start-provider");
    add("not JSON: trailing garbage", `${JSON.stringify(value)}xyz`, id, NOT_JSON);
  }
  {
    const { id, value } = fixture();
    add("not JSON: two objects back to back", `${JSON.stringify(value)}{}`, id, NOT_JSON);
  }
  {
    const { id, value } = fixture();
    add("not JSON: trailing comma", JSON.stringify(value).replace(/}$/, ",}"), id, NOT_JSON);
  }
  {
    const { id, value } = fixture();
    add("not JSON: single-quoted value", JSON.stringify(value).replace('"v1"', "'v1'"), id, NOT_JSON);
  }
  add(
    "not JSON: single quotes throughout",
    JSON.stringify(fixture().value).replaceAll('"', "'"),
    null,
    /^payload is not JSON: /,
  );
  {
    const { id, value } = fixture();
    add(
      "not JSON: NaN for maxInstances",
      withRaw(set(value, ["request", "maxInstances"], "@@"), "NaN"),
      id,
      NOT_JSON,
    );
  }
  {
    const { id, value } = fixture();
    add(
      "not JSON: Infinity literal",
      withRaw(set(value, ["request", "maxInstances"], "@@"), "Infinity"),
      id,
      NOT_JSON,
    );
  }
  {
    const { id, value } = fixture();
    add(
      "not JSON: undefined literal",
      withRaw(set(value, ["request", "claims"], "@@"), "undefined"),
      id,
      NOT_JSON,
    );
  }
  {
    const { id, value } = fixture();
    add(
      "not JSON: hexadecimal number",
      withRaw(set(value, ["request", "maxInstances"], "@@"), "0x1"),
      id,
      NOT_JSON,
    );
  }
  {
    const { id, value } = fixture();
    add("not JSON: leading zero", withRaw(set(value, ["request", "maxInstances"], "@@"), "01"), id, NOT_JSON);
  }
  {
    const { id, value } = fixture();
    add(
      "not JSON: raw control character in a string",
      JSON.stringify(value).replace("linux", "lin\u0001ux"),
      id,
      NOT_JSON,
    );
  }
  {
    const { id, value } = fixture();
    add("not JSON: comment before the object", `// policy\n${JSON.stringify(value)}`, id, NOT_JSON);
  }
  add("not JSON: bare word", "hello", null, /^payload is not JSON: .*"hello" is not valid JSON/);
  add("not JSON: bare word undefined", "undefined", null, /^payload is not JSON: /);
  add("not JSON: capitalised True", "True", null, /^payload is not JSON: /);
  add("not JSON: whitespace only", " \n\t ", null, /^payload is not JSON: Unexpected end of JSON input$/);
  add("not JSON: empty payload", new Uint8Array(0), null, /^empty payload: expected a JSON policy request$/);

  // --- JSON, but not an object ---------------------------------------------------------------------
  add("not an object: empty array", "[]", null, /got an array$/);
  addJson("not an object: array holding a valid request", [fixture().value], null, /got an array$/);
  add("not an object: string", '"startComponent"', null, /got a string$/);
  add("not an object: number", "42", null, /got a number$/);
  add("not an object: null", "null", null, /got null$/);
  add("not an object: true", "true", null, /got a boolean$/);
  add("not an object: false", "false", null, NOT_OBJECT);

  // --- Wrong types for the fields of a 1.x request -------------------------------------------------
  const invalid = (path: string, problem: string) => new RegExp(`^invalid request: ${path}: ${problem}`);
  mutatedId("wrong type: requestId is a number", "start-component", 42);
  mutated(
    "wrong type: kind is a number",
    "start-component",
    ["kind"],
    1,
    /^kind: expected a string, got a number$/,
  );
  mutated(
    "wrong type: kind is null",
    "start-component",
    ["kind"],
    null,
    /^kind: expected a string, got null$/,
  );
  mutated(
    "wrong type: version is a number",
    "start-component",
    ["version"],
    1,
    invalid("version", "Invalid input: expected string, received number"),
  );
  mutated(
    "wrong type: host is a string",
    "start-component",
    ["host"],
    "NBLSJGG",
    invalid("host", "Invalid input: expected object, received string"),
  );
  mutated(
    "wrong type: host.labels is an array",
    "start-component",
    ["host", "labels"],
    ["a=b"],
    invalid("host\\.labels", "Invalid input: expected object, received array"),
  );
  mutated(
    "wrong type: a host label is a number",
    "start-provider",
    ["host", "labels", "hostcore.cpus"],
    8,
    invalid("host\\.labels\\.hostcore\\.cpus", "Invalid input: expected string, received number"),
  );
  mutated(
    "wrong type: a host label is null",
    "start-component",
    ["host", "labels", "kubernetes"],
    null,
    invalid("host\\.labels\\.kubernetes", "Invalid input: expected string, received null"),
  );
  mutated(
    "wrong type: a host label is a boolean",
    "perform-invocation",
    ["host", "labels", "kubernetes"],
    true,
    invalid("host\\.labels\\.kubernetes", "Invalid input: expected string, received boolean"),
  );
  mutated(
    "wrong type: a host label is an object",
    "start-component",
    ["host", "labels", "zone"],
    { a: "b" },
    invalid("host\\.labels\\.zone", "Invalid input: expected string, received object"),
  );
  mutated(
    "wrong type: host.publicKey is a number",
    "start-component",
    ["host", "publicKey"],
    1,
    invalid("host\\.publicKey", "Invalid input: expected string"),
  );
  mutated(
    "wrong type: host.publicKey is empty",
    "start-component",
    ["host", "publicKey"],
    "",
    invalid("host\\.publicKey", "Too small"),
  );
  mutated(
    "wrong type: claims.issuedAt is a number",
    "start-component",
    ["request", "claims", "issuedAt"],
    1714506509,
    invalid("request\\.claims\\.issuedAt", "Invalid input: expected string, received number"),
  );
  mutated(
    "wrong type: claims.expiresAt is a string",
    "start-component",
    ["request", "claims", "expiresAt"],
    "1714506509",
    invalid("request\\.claims\\.expiresAt", "Invalid input: expected number, received string"),
  );
  mutated(
    "wrong type: claims.expiresAt is a float",
    "start-provider",
    ["request", "claims", "expiresAt"],
    1.5,
    invalid("request\\.claims\\.expiresAt", "Invalid input: expected int, received number"),
  );
  mutated(
    "wrong type: claims.expired is a string",
    "start-component",
    ["request", "claims", "expired"],
    "false",
    invalid("request\\.claims\\.expired", "Invalid input: expected boolean, received string"),
  );
  mutated(
    "wrong type: claims is an array",
    "start-provider",
    ["request", "claims"],
    [],
    invalid("request\\.claims", "Invalid input: expected object, received array"),
  );
  mutated(
    "wrong type: maxInstances is negative",
    "start-component",
    ["request", "maxInstances"],
    -1,
    invalid("request\\.maxInstances", "Too small: expected number to be >=0"),
  );
  mutated(
    "wrong type: maxInstances is a float",
    "start-component",
    ["request", "maxInstances"],
    1.5,
    invalid("request\\.maxInstances", "Invalid input: expected int, received number"),
  );
  mutated(
    "wrong type: maxInstances is a string",
    "start-component",
    ["request", "maxInstances"],
    "1",
    invalid("request\\.maxInstances", "Invalid input: expected number, received string"),
  );
  mutated(
    "wrong type: annotations is an array",
    "start-component",
    ["request", "annotations"],
    [],
    invalid("request\\.annotations", "Invalid input: expected object, received array"),
  );
  mutated(
    "wrong type: an annotation is a number",
    "start-provider",
    ["request", "annotations", "wasmcloud.dev/spread_name"],
    0,
    invalid(
      "request\\.annotations\\.wasmcloud\\.dev/spread_name",
      "Invalid input: expected string, received number",
    ),
  );
  mutated(
    "wrong type: componentId is null",
    "start-component",
    ["request", "componentId"],
    null,
    invalid("request\\.componentId", "Invalid input: expected string, received null"),
  );
  mutated(
    "wrong type: providerId is a number",
    "start-provider",
    ["request", "providerId"],
    7,
    invalid("request\\.providerId", "Invalid input: expected string, received number"),
  );
  mutated(
    "wrong type: imageRef is a number",
    "start-component",
    ["request", "imageRef"],
    1,
    invalid("request\\.imageRef", "Invalid input: expected string, received number"),
  );
  mutated(
    "wrong type: request body is a string",
    "start-component",
    ["request"],
    "start it",
    invalid("request", "Invalid input: expected object, received string"),
  );
  mutated(
    "wrong type: request body is null",
    "start-provider",
    ["request"],
    null,
    invalid("request", "Invalid input: expected object, received null"),
  );
  mutated(
    "wrong type: invocation interface is a number",
    "perform-invocation",
    ["request", "interface"],
    1,
    invalid("request\\.interface", "Invalid input: expected string, received number"),
  );
  mutated(
    "wrong type: invocation target is a string",
    "perform-invocation",
    ["request", "target"],
    "hello_world",
    invalid("request\\.target", "Invalid input: expected object, received string"),
  );
  mutated(
    "wrong type: invocation target maxInstances is a string",
    "perform-invocation",
    ["request", "target", "maxInstances"],
    "0",
    invalid("request\\.target\\.maxInstances", "Invalid input: expected number, received string"),
  );

  // --- Payload text echoed in a message is cut short -------------------------------------------------
  const long = (c: string) => c.repeat(60_000);
  const cut = (c: string) => `${c}{64}…\\(60000 characters\\)`;
  mutated(
    "echo: a 60000-character label key holding a number",
    "start-provider",
    ["host", "labels", long("k")],
    1,
    new RegExp(
      `^invalid request: host\\.labels\\.${cut("k")}: Invalid input: expected string, received number$`,
    ),
  );
  {
    const { id, value } = fixture("start-provider");
    for (const c of ["a", "b", "c", "d"]) set(value, ["request", "annotations", c.repeat(15_000)], 0);
    add(
      "echo: four 15000-character annotation keys holding numbers",
      JSON.stringify(value),
      id,
      /^invalid request: request\.annotations\.a{64}…\(15000 characters\): [^;]+; .*b{64}….*; .*c{64}….*; and 1 more$/,
    );
  }
  mutated(
    "echo: a 60000-character kind",
    "start-component",
    ["kind"],
    long("x"),
    new RegExp(`^unknown kind "${cut("x")}": ${KINDS.source}$`),
  );
  {
    const id = nextId();
    addJson(
      "echo: a 60000-character 0.82 action",
      set(legacyRequest(id), ["action"], long("y")),
      id,
      new RegExp(`^unknown action "${cut("y")}": expected start_actor`),
    );
  }
  {
    const id = nextId();
    addJson(
      "echo: a 0.82 action that is a large object",
      set(legacyRequest(id), ["action"], { start_actor: long("z") }),
      id,
      /^unknown action \{"start_actor":"z{48}…\(60018 characters\): expected start_actor/,
    );
  }
  {
    const { id, value } = fixture();
    let deep: Json = 1;
    for (let level = 0; level < 40; level++) deep = { [`${level}`.padStart(1500, "n")]: deep };
    add(
      "echo: 40 levels of 1500-character keys (path cut in the middle)",
      JSON.stringify(set(value, ["extra"], deep)),
      id,
      /^extra\.n{64}…\(1500 characters\)\.n{64}.*….*: nested deeper than 32 levels$/,
    );
  }
  mutated(
    "echo: a 60000-character __proto__ path",
    "start-component",
    ["host", "labels", long("p")],
    JSON.parse('{"__proto__":"x"}'),
    /^host\.labels\.p{64}…\(60000 characters\)\.__proto__: the key "__proto__" is not allowed$/,
  );

  // --- Missing fields ------------------------------------------------------------------------------
  mutatedId("missing: requestId", "start-component", undefined);
  mutated("missing: kind", "start-component", ["kind"], undefined, /^kind: required$/);
  mutated(
    "missing: version",
    "start-component",
    ["version"],
    undefined,
    invalid("version", "Invalid input: expected string, received undefined"),
  );
  mutated(
    "missing: request",
    "start-provider",
    ["request"],
    undefined,
    invalid("request", "Invalid input: expected object, received undefined"),
  );
  mutated(
    "missing: host",
    "start-component",
    ["host"],
    undefined,
    invalid("host", "Invalid input: expected object, received undefined"),
  );
  mutated(
    "missing: host.publicKey",
    "start-component",
    ["host", "publicKey"],
    undefined,
    invalid("host\\.publicKey", "Invalid input: expected string, received undefined"),
  );
  mutated(
    "missing: host.lattice",
    "start-provider",
    ["host", "lattice"],
    undefined,
    invalid("host\\.lattice", "Invalid input: expected string, received undefined"),
  );
  mutated(
    "missing: host.labels",
    "perform-invocation",
    ["host", "labels"],
    undefined,
    invalid("host\\.labels", "Invalid input: expected object, received undefined"),
  );
  mutated(
    "missing: componentId",
    "start-component",
    ["request", "componentId"],
    undefined,
    invalid("request\\.componentId", "Invalid input: expected string, received undefined"),
  );
  mutated(
    "missing: imageRef",
    "start-component",
    ["request", "imageRef"],
    undefined,
    invalid("request\\.imageRef", "Invalid input: expected string, received undefined"),
  );
  mutated(
    "missing: maxInstances",
    "start-component",
    ["request", "maxInstances"],
    undefined,
    invalid("request\\.maxInstances", "Invalid input: expected number, received undefined"),
  );
  mutated(
    "missing: annotations",
    "start-component",
    ["request", "annotations"],
    undefined,
    invalid("request\\.annotations", "Invalid input: expected object, received undefined"),
  );
  mutated(
    "missing: claims (null is sent, never omitted)",
    "start-component",
    ["request", "claims"],
    undefined,
    invalid("request\\.claims", "Invalid input: expected object, received undefined"),
  );
  mutated(
    "missing: providerId",
    "start-provider",
    ["request", "providerId"],
    undefined,
    invalid("request\\.providerId", "Invalid input: expected string, received undefined"),
  );
  mutated(
    "missing: provider imageRef",
    "start-provider",
    ["request", "imageRef"],
    undefined,
    invalid("request\\.imageRef", "Invalid input: expected string, received undefined"),
  );
  mutated(
    "missing: interface in performInvocation",
    "perform-invocation",
    ["request", "interface"],
    undefined,
    invalid("request\\.interface", "Invalid input: expected string, received undefined"),
  );
  mutated(
    "missing: function in performInvocation",
    "perform-invocation",
    ["request", "function"],
    undefined,
    invalid("request\\.function", "Invalid input: expected string, received undefined"),
  );
  mutated(
    "missing: target in performInvocation",
    "perform-invocation",
    ["request", "target"],
    undefined,
    invalid("request\\.target", "Invalid input: expected object, received undefined"),
  );
  mutated(
    "missing: target.componentId in performInvocation",
    "perform-invocation",
    ["request", "target", "componentId"],
    undefined,
    invalid("request\\.target\\.componentId", "Invalid input: expected string, received undefined"),
  );
  for (const field of ["publicKey", "issuer", "issuedAt", "expiresAt", "expired"]) {
    mutated(
      `missing: claims.${field}`,
      "start-provider",
      ["request", "claims", field],
      undefined,
      invalid(`request\\.claims\\.${field}`, "Invalid input: expected \\w+, received undefined"),
    );
  }
  {
    const { id, value } = fixture();
    remove(remove(remove(value, ["version"]), ["request"]), ["host"]);
    add(
      "missing: version, request and host together",
      JSON.stringify(value),
      id,
      /^invalid request: version: .*; host: .*; request: .*received undefined$/,
    );
  }
  {
    const { id, value } = fixture();
    set(value, ["version"], 1);
    set(value, ["request", "maxInstances"], "x");
    set(value, ["host", "labels", "a"], 1);
    set(value, ["host", "labels", "b"], 2);
    add(
      "wrong type: four fields at once (three named, the rest counted)",
      JSON.stringify(value),
      id,
      /^invalid request: version: [^;]+; host\.labels\.a: [^;]+; host\.labels\.b: [^;]+; and 1 more$/,
    );
  }

  // --- Unknown kinds -------------------------------------------------------------------------------
  for (const kind of [
    "startFoo",
    "StartComponent",
    "start_component",
    "",
    "__proto__",
    "constructor",
    "toString",
  ]) {
    mutated(
      `unknown kind: ${JSON.stringify(kind)}`,
      "start-component",
      ["kind"],
      kind,
      new RegExp(`^unknown kind ${JSON.stringify(kind)}: ${KINDS.source}$`),
    );
  }

  // --- 0.82 lineage --------------------------------------------------------------------------------
  {
    const id = nextId();
    addJson(
      "0.82: unknown action",
      set(legacyRequest(id), ["action"], "start_foo"),
      id,
      /^unknown action "start_foo": expected start_actor, start_provider or perform_invocation$/,
    );
  }
  {
    const id = nextId();
    addJson(
      "0.82: action in camelCase",
      set(legacyRequest(id), ["action"], "startActor"),
      id,
      /^unknown action "startActor"/,
    );
  }
  {
    const id = nextId();
    addJson(
      "0.82: action is a number",
      set(legacyRequest(id), ["action"], 1),
      id,
      /^unknown action 1: expected start_actor/,
    );
  }
  {
    const id = nextId();
    addJson(
      "0.82: missing target.publicKey",
      remove(legacyRequest(id), ["target", "publicKey"]),
      id,
      invalid("target\\.publicKey", "Invalid input: expected string, received undefined"),
    );
  }
  {
    const id = nextId();
    addJson(
      "0.82: target.publicKey is null",
      set(legacyRequest(id), ["target", "publicKey"], null),
      id,
      invalid("target\\.publicKey", "Invalid input: expected string, received null"),
    );
  }
  {
    const id = nextId();
    addJson(
      "0.82: missing target",
      remove(legacyRequest(id), ["target"]),
      id,
      invalid("target", "Invalid input: expected object, received undefined"),
    );
  }
  {
    const id = nextId();
    addJson(
      "0.82: missing host.latticeId",
      remove(legacyRequest(id), ["host", "latticeId"]),
      id,
      invalid("host\\.latticeId", "Invalid input: expected string, received undefined"),
    );
  }
  {
    const id = nextId();
    addJson(
      "0.82: source.capabilities is a string",
      set(legacyRequest(id), ["source", "capabilities"], "wasmcloud:httpserver"),
      id,
      invalid("source\\.capabilities", "Invalid input: expected array, received string"),
    );
  }

  // --- Oversized -----------------------------------------------------------------------------------
  const padded = (from: FixtureName, total: number): { id: string; text: string } => {
    const { id, value } = fixture(from);
    const bare = JSON.stringify(set(value, ["padding"], "")).length;
    set(value, ["padding"], "x".repeat(total - bare));
    const text = JSON.stringify(value);
    if (text.length !== total) throw new Error(`padded: ${text.length} != ${total}`);
    return { id, text };
  };
  {
    const { id, text } = padded("start-provider", MAX_PAYLOAD_BYTES + 1);
    add(
      "oversized: one byte over the limit",
      text,
      id,
      new RegExp(`^payload of ${MAX_PAYLOAD_BYTES + 1} bytes ${TOO_BIG.source}`),
    );
  }
  {
    const { id, text } = padded("start-component", 4 * MAX_PAYLOAD_BYTES);
    add("oversized: four times the limit", text, id, TOO_BIG);
  }
  {
    const { id, text } = padded("perform-invocation", 900 * 1024);
    add("oversized: 900 KiB (below NATS max_payload)", text, id, TOO_BIG);
  }
  {
    // The decoder looks for the id only in the first 4 KiB of an oversized payload.
    const { value } = fixture();
    remove(value, ["requestId"]);
    const late = { padding: "x".repeat(MAX_PAYLOAD_BYTES), ...value, requestId: nextId() };
    addJson(
      "oversized: request id only after the first 4 KiB",
      late,
      null,
      new RegExp(`^payload of \\d+ bytes ${TOO_BIG.source}`),
    );
  }
  add(
    "oversized: not JSON at all",
    "x".repeat(MAX_PAYLOAD_BYTES * 2),
    null,
    /^payload of 131072 bytes exceeds/,
  );
  {
    const { id, text } = padded("start-provider", MAX_PAYLOAD_BYTES);
    accept("oversized? no: exactly at the limit", text, id, "start-provider");
  }

  // --- Deep nesting --------------------------------------------------------------------------------
  for (const levels of [40, 1000, 100_000]) {
    for (const shape of ["array", "object"] as const) {
      const expect = levels === 100_000 ? TOO_BIG : TOO_DEEP;
      {
        const { id, value } = fixture();
        add(
          `deep nesting: ${shape}s ${levels} levels in an extra field`,
          withRaw(set(value, ["extra"], "@@"), nested(levels, "1", shape)),
          id,
          expect,
        );
      }
      {
        const { id, value } = fixture("start-provider");
        add(
          `deep nesting: ${shape}s ${levels} levels inside request`,
          withRaw(set(value, ["request", "nested"], "@@"), nested(levels, "null", shape)),
          id,
          expect,
        );
      }
    }
  }
  {
    // As deep as fits under the size limit: deeper than JSON.stringify can recurse, and more
    // objects and arrays than a request may hold, so it is refused for their count, unparsed.
    const { id, value } = fixture();
    add(
      "deep nesting: arrays 30000 levels (under the size limit)",
      withRaw(set(value, ["extra"], "@@"), nested(30_000, "", "array")),
      id,
      TOO_MANY,
    );
  }
  {
    const { id, value } = fixture("perform-invocation");
    add(
      "deep nesting: objects 10000 levels inside request.target",
      withRaw(set(value, ["request", "target", "nested"], "@@"), nested(10_000, "0", "object")),
      id,
      TOO_MANY,
    );
  }
  {
    const { id, value } = fixture();
    add(
      "deep nesting: 33 levels as the request body itself",
      withRaw(set(value, ["request"], "@@"), nested(33, "{}", "array")),
      id,
      /^request(\[0\]){31}: nested deeper than 32 levels$/,
    );
  }
  {
    const { id, value } = fixture("start-provider");
    accept(
      "deep nesting? no: 32 levels in an extra field",
      withRaw(set(value, ["extra"], "@@"), nested(31, "1", "array")),
      id,
      "start-provider",
    );
  }

  // --- __proto__ keys ------------------------------------------------------------------------------
  const proto = /: the key "__proto__" is not allowed$/;
  mutated(
    "__proto__ key: top level",
    "start-provider",
    ["__proto__"],
    { permitted: true },
    /^__proto__: the key "__proto__" is not allowed$/,
  );
  mutated(
    "__proto__ key: inside request",
    "start-provider",
    ["request", "__proto__"],
    { claims: null },
    /^request\.__proto__: the key/,
  );
  mutated(
    "__proto__ key: in host.labels",
    "start-component",
    ["host", "labels", "__proto__"],
    "x",
    /^host\.labels\.__proto__: the key/,
  );
  mutated(
    "__proto__ key: in annotations",
    "start-component",
    ["request", "annotations", "__proto__"],
    "x",
    /^request\.annotations\.__proto__: the key/,
  );
  mutated(
    "__proto__ key: in claims",
    "start-provider",
    ["request", "claims", "__proto__"],
    { issuer: "A" },
    /^request\.claims\.__proto__: the key/,
  );
  {
    const { id, value } = fixture();
    set(set(value, ["extra"], [{ a: [{}] }]), ["extra", 0, "a", 0, "__proto__"], 1);
    add(
      "__proto__ key: deep in an extra field",
      JSON.stringify(value),
      id,
      /^extra\[0\]\.a\[0\]\.__proto__: the key/,
    );
  }
  {
    const { id, value } = fixture("start-provider");
    set(value, ["extra"], { a: [{ b: "@@" }] });
    add(
      "__proto__ key: deep in an extra field (escaped as \\u005f_proto__)",
      withRaw(value, '{"\\u005f_proto__":{"polluted":true}}'),
      id,
      /^extra\.a\[0\]\.b\.__proto__: the key/,
    );
  }
  {
    const { id, value } = fixture();
    add(
      "__proto__ key: duplicated at top level",
      JSON.stringify(value).replace(/}$/, ',"__proto__":null,"__proto__":{}}'),
      id,
      proto,
    );
  }

  // --- Invalid UTF-8 (request id still readable) ---------------------------------------------------
  const utf8Cases: [string, number[]][] = [
    ["lone 0xff byte", [0xff]],
    ["lone continuation byte", [0x80]],
    ["truncated 3-byte sequence", [0xe2, 0x82]],
    ["truncated 4-byte sequence", [0xf0, 0x9f, 0x98]],
    ["overlong encoding of '/'", [0xc0, 0xaf]],
    ["overlong 3-byte NUL", [0xe0, 0x80, 0x80]],
    ["UTF-16 high surrogate encoded in UTF-8", [0xed, 0xa0, 0x80]],
    ["UTF-16 surrogate pair encoded in UTF-8 (CESU-8)", [0xed, 0xa0, 0xbd, 0xed, 0xb8, 0x80]],
    ["code point above U+10FFFF", [0xf4, 0x90, 0x80, 0x80]],
  ];
  for (const [label, bytes] of utf8Cases) {
    const { id, value } = fixture();
    add(
      `invalid UTF-8: ${label} in a host label`,
      splice(JSON.stringify(value), "aarch64", bytes),
      id,
      NOT_UTF8,
    );
  }
  {
    const { value } = fixture();
    remove(value, ["requestId"]);
    add(
      "invalid UTF-8: 0xff and no request id",
      splice(JSON.stringify(value), "aarch64", [0xff]),
      null,
      /^payload is not valid UTF-8$/,
    );
  }
  {
    const { id, value } = fixture();
    set(value, ["request", "componentId"], "hello");
    add(
      "invalid UTF-8 and not JSON",
      splice(JSON.stringify(value).slice(0, 200), "hello", [0xfe, 0xfe]),
      id,
      NOT_UTF8,
    );
  }

  // --- Request id problems -------------------------------------------------------------------------
  mutatedId("request id: empty string", "start-provider", "");
  mutatedId("request id: 257 characters", "start-provider", "0".repeat(MAX_REQUEST_ID_LENGTH + 1));
  mutatedId("request id: 10000 characters", "start-component", "a".repeat(10_000));
  mutatedId("request id: null", "start-component", null);
  mutatedId("request id: an object", "start-component", { id: "x" });
  mutatedId("request id: an array", "start-component", ["01945242-abec-71ee-f5e6-1f44eb61ad40"]);
  {
    const { id, value } = fixture();
    add(
      "request id: readable although the payload is not JSON (escaped quote kept)",
      JSON.stringify(set(value, ["requestId"], `${id}"q`)).slice(0, 120),
      `${id}"q`,
      NOT_JSON,
    );
  }
  {
    const { value } = fixture("start-provider");
    const long = `${nextId()}-${"9".repeat(MAX_REQUEST_ID_LENGTH)}`;
    accept(
      "request id: 256 characters",
      JSON.stringify(set(value, ["requestId"], long.slice(0, MAX_REQUEST_ID_LENGTH))),
      long.slice(0, MAX_REQUEST_ID_LENGTH),
      "start-provider",
    );
  }

  // --- Duplicate keys (JSON.parse keeps the last, a first-key reader of the record sees another) -
  const duplicate = (key: string, where: string) =>
    new RegExp(`^duplicate key "${key}" at ${where.replaceAll(".", "\\.").replaceAll("[", "\\[")}$`);
  {
    const { id, value } = fixture();
    add(
      "duplicate keys: kind valid, then a number",
      JSON.stringify(value).replace('"version"', '"kind":7,"version"'),
      id,
      duplicate("kind", "the top level"),
    );
  }
  {
    const { id, value } = fixture("start-provider");
    add(
      "duplicate keys: kind valid, then startFoo",
      JSON.stringify(value).replace('"version"', '"kind":"startFoo","version"'),
      id,
      duplicate("kind", "the top level"),
    );
  }
  // The first id is a valid string, yet JSON.parse keeps the number, so no id is left to answer.
  add(
    "duplicate keys: request id valid, then a number (no id left)",
    JSON.stringify(fixture().value).replace('"kind"', '"requestId":1,"kind"'),
    null,
    duplicate("requestId", "the top level"),
  );
  {
    const { value } = fixture();
    const last = nextId();
    add(
      "duplicate keys: two request ids: the last one is answered",
      JSON.stringify(value).replace('"kind"', `"requestId":"${last}","kind"`),
      last,
      duplicate("requestId", "the top level"),
    );
  }
  {
    const { id, value } = fixture();
    add(
      "duplicate keys: host valid, then a string",
      JSON.stringify(value).replace(/}$/, ',"host":"x"}'),
      id,
      duplicate("host", "the top level"),
    );
  }
  {
    const { value } = fixture("perform-invocation");
    const last = nextId();
    add(
      "duplicate keys: request id a number, then valid",
      JSON.stringify(value)
        .replace('"kind"', `"requestId":"${last}","kind"`)
        .replace(/^\{"requestId":"[^"]+"/, '{"requestId":42'),
      last,
      duplicate("requestId", "the top level"),
    );
  }
  {
    const { id, value } = fixture("start-provider");
    add(
      "duplicate keys: kind invalid, then valid",
      JSON.stringify(value).replace('"kind"', '"kind":"startFoo","kind"'),
      id,
      duplicate("kind", "the top level"),
    );
  }
  {
    const { id, value } = fixture();
    const evil = JSON.stringify({
      ...((value["request"] as JsonObject)["claims"] as JsonObject),
      issuer: "AEVIL",
    });
    add(
      "duplicate keys: claims, an evil copy before the real one",
      JSON.stringify(value).replace('"claims":', `"claims":${evil},"claims":`),
      id,
      duplicate("claims", "request"),
    );
  }
  {
    const { id, value } = fixture("perform-invocation");
    add(
      "duplicate keys: claims inside an invocation's target",
      JSON.stringify(value).replace('"claims":', '"claims":null,"claims":'),
      id,
      duplicate("claims", "request.target"),
    );
  }
  {
    const { id, value } = fixture();
    add(
      "duplicate keys: kind, the second written as \\u006bind",
      JSON.stringify(value).replace('"version"', '"\\u006bind":"unknown","version"'),
      id,
      duplicate("kind", "the top level"),
    );
  }
  {
    const { id, value } = fixture();
    add(
      "duplicate keys: an issuer in claims, the second fully escaped",
      JSON.stringify(value).replace(
        '"issuer":',
        '"issuer":"AEVIL","\\u0069\\u0073\\u0073\\u0075\\u0065\\u0072":',
      ),
      id,
      duplicate("issuer", "request.claims"),
    );
  }
  {
    const { id, value } = fixture("start-provider");
    add(
      "duplicate keys: a host label",
      JSON.stringify(value).replace('"hostcore.os"', '"hostcore.os":"windows","hostcore.os"'),
      id,
      duplicate("hostcore.os", "host.labels"),
    );
  }
  {
    const { id, value } = fixture();
    set(value, ["extra"], [{ a: 1 }, { list: [{ b: 1 }] }]);
    add(
      "duplicate keys: deep in an array of an extra field",
      JSON.stringify(value).replace('{"b":1}', '{"b":1,"b":1}'),
      id,
      duplicate("b", "extra[1].list[0]"),
    );
  }
  {
    const value = legacyRequest(nextId());
    add(
      "duplicate keys: a 0.82 request's action",
      JSON.stringify(value).replace('"action"', '"action":"perform_invocation","action"'),
      value["requestId"] as string,
      duplicate("action", "the top level"),
    );
  }
  {
    const { id, value } = fixture("start-provider");
    accept(
      "duplicate keys: none, only keys that differ in case (Kind, kind)",
      JSON.stringify(value).replace('"version"', '"Kind":"unknown","version"'),
      id,
      "start-provider",
    );
  }

  // --- Huge numbers --------------------------------------------------------------------------------
  // JSON.parse reads a number beyond a double's range as Infinity, which JSON writes as null: no
  // record of the index or of a re-evaluation could keep the request as it was evaluated.
  {
    const { id, value } = fixture();
    add(
      "huge number: maxInstances 1e400 (Infinity)",
      withRaw(set(value, ["request", "maxInstances"], "@@"), "1e400"),
      id,
      /^request\.maxInstances: a number beyond the range of a double$/,
    );
  }
  {
    const { id, value } = fixture();
    add(
      "huge number: maxInstances -1e400 (-Infinity)",
      withRaw(set(value, ["request", "maxInstances"], "@@"), "-1e400"),
      id,
      /^request\.maxInstances: a number beyond the range of a double$/,
    );
  }
  {
    const { id, value } = fixture("start-provider");
    add(
      "huge number: expiresAt 1e400",
      withRaw(set(value, ["request", "claims", "expiresAt"], "@@"), "1e400"),
      id,
      /^request\.claims\.expiresAt: a number beyond the range of a double$/,
    );
  }
  {
    const { id, value } = fixture();
    add(
      "huge number: maxInstances 2^53 + 1",
      withRaw(set(value, ["request", "maxInstances"], "@@"), "9007199254740993"),
      id,
      /Too big: expected int to be <=9007199254740991$/,
    );
  }
  {
    const { id, value } = fixture("perform-invocation");
    add(
      "huge number: target.maxInstances 1e308",
      withRaw(set(value, ["request", "target", "maxInstances"], "@@"), "1e308"),
      id,
      /^invalid request: request\.target\.maxInstances: Too big/,
    );
  }
  {
    const { id, value } = fixture("start-provider");
    add(
      "huge number: an unknown field holding 1e400 (rules read it through input)",
      withRaw(set(value, ["extra"], "@@"), "1e400"),
      id,
      /^extra: a number beyond the range of a double$/,
    );
  }

  // --- constructor / prototype keys are legal names -------------------------------------------------
  {
    const { id, value } = fixture("start-provider");
    for (const key of ["constructor", "prototype", "toString", "hasOwnProperty", "valueOf"]) {
      set(value, ["host", "labels", key], key);
    }
    accept(
      "constructor keys: host labels named constructor, prototype, toString…",
      JSON.stringify(value),
      id,
      "start-provider",
    );
  }
  {
    const { id, value } = fixture("start-provider");
    set(value, ["request", "annotations", "constructor"], "x");
    set(value, ["request", "annotations", "prototype"], "y");
    accept(
      "constructor keys: annotations named constructor and prototype",
      JSON.stringify(value),
      id,
      "start-provider",
    );
  }
  {
    const { id, value } = fixture("perform-invocation");
    set(value, ["constructor"], { prototype: { polluted: true } });
    set(value, ["request", "target", "annotations", "constructor"], "c");
    accept(
      "constructor keys: top-level constructor.prototype object and a target annotation",
      JSON.stringify(value),
      id,
      "perform-invocation",
    );
  }
  {
    const { id, value } = fixture("start-component");
    set(value, ["host", "labels", "constructor"], "x");
    accept(
      "constructor keys: start-component keeps its real (deny) answer",
      JSON.stringify(value),
      id,
      "start-component",
    );
  }
  {
    const id = nextId();
    odd.push({
      name: "0.82: a valid start_actor request is answered",
      bytes: encoder.encode(JSON.stringify(legacyRequest(id))),
      requestId: id,
      permitted: true,
      expect: /^signed by wasmCloud$/,
    });
  }
  {
    const { id, value } = fixture("start-provider");
    accept(
      "UTF-8 byte order mark before a valid request (decoded away)",
      new Uint8Array([0xef, 0xbb, 0xbf, ...encoder.encode(JSON.stringify(value))]),
      id,
      "start-provider",
    );
  }

  return { bad, odd };
}

const corpus = build();

/** At least 100 bad payloads, mostly mutations of the real wasmCloud 1.x requests. */
export const BAD_INPUTS: readonly BadInput[] = corpus.bad;

/** Suspicious-looking but valid payloads, with the answer the example rules give them. */
export const ODD_BUT_VALID_INPUTS: readonly OddButValidInput[] = corpus.odd;
