import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { countWrittenKeys, type DuplicateKey, findDuplicateKey } from "./duplicate-keys.js";

/** A JSON tree that can hold repeated keys: objects are lists of entries, in writing order. */
type Tree =
  | { readonly t: "leaf"; readonly json: unknown }
  | { readonly t: "array"; readonly items: readonly Tree[] }
  | { readonly t: "object"; readonly entries: readonly (readonly [string, Tree])[] };

/** The reference: the first key, in document order, that its object already has. */
function referenceDuplicate(tree: Tree, path: (string | number)[] = []): DuplicateKey | null {
  if (tree.t === "array") {
    for (const [i, item] of tree.items.entries()) {
      const found = referenceDuplicate(item, [...path, i]);
      if (found) return found;
    }
  } else if (tree.t === "object") {
    const seen = new Set<string>();
    for (const [key, value] of tree.entries) {
      if (seen.has(key)) return { key, path };
      seen.add(key);
      const found = referenceDuplicate(value, [...path, key]);
      if (found) return found;
    }
  }
  return null;
}

/** Keys of the value JSON.parse makes of the tree (a repeated key keeps its last value only). */
function parsedKeyCount(value: unknown): number {
  if (typeof value !== "object" || value === null) return 0;
  if (Array.isArray(value)) return value.reduce((n: number, item) => n + parsedKeyCount(item), 0);
  let keys = 0;
  for (const item of Object.values(value)) keys += 1 + parsedKeyCount(item);
  return keys;
}

const short = fc.constantFrom("a", "b", "kind", "k:", 'q"', "b\\", "{", "}", "[", ",", "é", "😀", "");
const leaf = fc.oneof(
  fc.constantFrom(null, true, false, 0, -1.5e300, "", '"', "\\", '\\"', "a:b", "{[,]}", "\u2028"),
  fc.string({ unit: "binary", maxLength: 8 }),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
);
const { tree } = fc.letrec<{ tree: Tree }>((tie) => ({
  tree: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    leaf.map((json): Tree => ({ t: "leaf", json })),
    fc.array(tie("tree"), { maxLength: 4 }).map((items): Tree => ({ t: "array", items })),
    fc
      .array(fc.tuple(short, tie("tree")), { maxLength: 5 })
      .map((entries): Tree => ({ t: "object", entries })),
  ),
}));

/** How a tree is written: keys escaped or not, whitespace around tokens or not. */
const style = fc.record({
  escapes: fc.array(fc.boolean(), { minLength: 1 }),
  space: fc.constantFrom("", " ", "\n\t "),
});

function write(node: Tree, how: { escapes: boolean[]; space: string }, counter = { n: 0 }): string {
  const s = how.space;
  switch (node.t) {
    case "leaf":
      return JSON.stringify(node.json);
    case "array":
      return `[${s}${node.items.map((item) => write(item, how, counter)).join(`${s},${s}`)}${s}]`;
    case "object": {
      const entries = node.entries.map(([key, value]) => {
        const escaped = how.escapes[counter.n++ % how.escapes.length];
        return `${escaped ? escapeAll(key) : JSON.stringify(key)}${s}:${s}${write(value, how, counter)}`;
      });
      return `{${s}${entries.join(`${s},${s}`)}${s}}`;
    }
  }
}

/** A key written with every UTF-16 unit as `\uXXXX`: the same key once unescaped. */
function escapeAll(key: string): string {
  const units = Array.from({ length: key.length }, (_, i) => key.charCodeAt(i).toString(16).padStart(4, "0"));
  return `"${units.map((unit) => `\\u${unit}`).join("")}"`;
}

describe("duplicate keys", () => {
  it("finds a key repeated at the top level", () => {
    const text = '{"claims":{"issuer":"evil"},"claims":{"issuer":"real"}}';
    expect(findDuplicateKey(text, 32)).toEqual({ key: "claims", path: [] });
    expect(countWrittenKeys(text)).toBe(4);
  });

  it("finds a nested one, with the path through objects and arrays", () => {
    expect(findDuplicateKey('{"request":{"claims":null,"claims":{}}}', 32)).toEqual({
      key: "claims",
      path: ["request"],
    });
    expect(findDuplicateKey('{"x":[1,{"a":1},[{"b":2,"b":3}]]}', 32)).toEqual({
      key: "b",
      path: ["x", 2, 0],
    });
  });

  it("sees keys that are equal only once unescaped", () => {
    expect(findDuplicateKey('{"kind":"startComponent","\\u006bind":"unknown"}', 32)).toEqual({
      key: "kind",
      path: [],
    });
    expect(findDuplicateKey('{"a\\"b":1,"a\\u0022b":2}', 32)).toEqual({ key: 'a"b', path: [] });
  });

  it("does not confuse strings with structure", () => {
    const text = '{"a":"\\",\\"a\\":{","b":"}:[","c\\\\":"\\\\","d":["a","a"],"e":{"a":1}}';
    expect(JSON.parse(text)).toBeTruthy();
    expect(findDuplicateKey(text, 32)).toBeNull();
    expect(countWrittenKeys(text)).toBe(6);
  });

  it("tells keys apart that differ in case or by a character", () => {
    expect(findDuplicateKey('{"kind":1,"Kind":2,"kind ":3,"kin":4}', 32)).toBeNull();
  });

  it("checks large objects through a set, and finds the repeat at the end", () => {
    const keys = Array.from({ length: 5000 }, (_, i) => `"k${i}":${i}`);
    expect(findDuplicateKey(`{${keys.join(",")}}`, 32)).toBeNull();
    expect(findDuplicateKey(`{${keys.join(",")},"k17":0}`, 32)).toEqual({ key: "k17", path: [] });
    expect(findDuplicateKey(`{${keys.join(",")},"k4999":0}`, 32)).toEqual({ key: "k4999", path: [] });
  });

  it("leaves keys deeper than the limit to the depth check, and still sees those above", () => {
    const deep = '{"a":'.repeat(40) + '{"x":1,"x":2}' + "}".repeat(40);
    expect(findDuplicateKey(deep, 32)).toBeNull();
    expect(findDuplicateKey(`{"k":${deep},"k":1}`, 32)).toEqual({ key: "k", path: [] });
  });

  it("agrees with a reference on generated JSON, with and without repeated keys", () => {
    fc.assert(
      fc.property(tree, style, (node, how) => {
        const text = write(node, how);
        const parsed: unknown = JSON.parse(text);
        const expected = referenceDuplicate(node);
        expect(findDuplicateKey(text, 1000)).toEqual(expected);
        expect(countWrittenKeys(text) !== parsedKeyCount(parsed)).toBe(expected !== null);
      }),
      { numRuns: 2000 },
    );
  });

  it("finds nothing in what JSON.stringify writes", () => {
    fc.assert(
      fc.property(fc.jsonValue(), (value) => {
        const text = JSON.stringify(value);
        expect(findDuplicateKey(text, 1000)).toBeNull();
        expect(countWrittenKeys(text)).toBe(parsedKeyCount(JSON.parse(text)));
      }),
      { numRuns: 1000 },
    );
  });
});
