/** A key that appears twice in one JSON object, and where: the steps from the root to that object. */
export interface DuplicateKey {
  /** The key, unescaped (`"\u006bind"` and `"kind"` are the same key). */
  readonly key: string;
  /** Object keys and array indexes from the root to the object holding the key; empty at the root. */
  readonly path: readonly (string | number)[];
}

/** Objects with more keys than this are checked with a Set; smaller ones by a linear search. */
const LINEAR_KEYS = 16;
const COLON = 0x3a;
const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COMMA = 0x2c;
const OPEN_OBJECT = 0x7b;
const CLOSE_OBJECT = 0x7d;
const OPEN_ARRAY = 0x5b;
const CLOSE_ARRAY = 0x5d;

/**
 * How many keys a JSON text writes (its colons outside strings), for a text JSON.parse accepted.
 * When it is more than the keys of the parsed value, some object repeats a key: JSON.parse keeps
 * the last copy and says nothing. No well-kept library reports duplicates without a second full
 * parse; this hand-written count jumps from quote to quote with `indexOf` and allocates nothing,
 * so on a real request it costs about a third of the JSON.parse before it.
 */
export function countWrittenKeys(text: string): number {
  let keys = 0;
  const length = text.length;
  for (let i = 0; i < length; i++) {
    const c = text.charCodeAt(i);
    if (c === QUOTE) i = stringEnd(text, i);
    else if (c === COLON) keys++;
  }
  return keys;
}

/**
 * The first duplicate key, in document order, of a text that JSON.parse has already accepted, or
 * null, to name what {@link countWrittenKeys} found. It keeps the keys of each open object and
 * unescapes a key only when it holds a backslash. Keys of objects nested deeper than `maxDepth` (the root is at depth 1) are
 * not tracked: the caller refuses such nesting on its own. Assumes valid JSON; never throws on it.
 */
export function findDuplicateKey(text: string, maxDepth: number): DuplicateKey | null {
  // Per depth: whether it is an array, its keys so far (objects) or its current index (arrays).
  const isArray: boolean[] = [];
  const keys: string[][] = [];
  const counts: number[] = [];
  const sets: (Set<string> | undefined)[] = [];
  let depth = 0;
  let keyNext = false;
  const length = text.length;
  for (let i = 0; i < length; i++) {
    const c = text.charCodeAt(i);
    if (c === QUOTE) {
      let end = text.indexOf('"', i + 1);
      while (text.charCodeAt(end - 1) === BACKSLASH && escapedQuote(text, end))
        end = text.indexOf('"', end + 1);
      if (keyNext && depth <= maxDepth) {
        keyNext = false;
        const raw = text.slice(i + 1, end);
        const key = raw.indexOf("\\") < 0 ? raw : (JSON.parse(text.slice(i, end + 1)) as string);
        const level = keys[depth] as string[];
        const count = counts[depth] as number;
        if (seen(level, count, sets, depth, key)) return { key, path: pathTo(depth, isArray, keys, counts) };
        level[count] = key;
        counts[depth] = count + 1;
      }
      i = end;
    } else if (c === OPEN_OBJECT || c === OPEN_ARRAY) {
      depth++;
      if (depth <= maxDepth) {
        const array = c === OPEN_ARRAY;
        isArray[depth] = array;
        counts[depth] = 0;
        if (keys[depth] === undefined) keys[depth] = [];
        sets[depth] = undefined;
        keyNext = !array;
      }
    } else if (c === CLOSE_OBJECT || c === CLOSE_ARRAY) {
      depth--;
      keyNext = false;
    } else if (c === COMMA && depth <= maxDepth) {
      if (isArray[depth]) counts[depth] = (counts[depth] as number) + 1;
      else keyNext = true;
    }
  }
  return null;
}

/** The index of the quote that closes the string opened at `start`. */
function stringEnd(text: string, start: number): number {
  let end = text.indexOf('"', start + 1);
  while (text.charCodeAt(end - 1) === BACKSLASH && escapedQuote(text, end)) end = text.indexOf('"', end + 1);
  return end;
}

/** Whether the quote at `end` is escaped: preceded by an odd number of backslashes. */
function escapedQuote(text: string, end: number): boolean {
  let n = 0;
  while (text.charCodeAt(end - 1 - n) === BACKSLASH) n++;
  return n % 2 === 1;
}

/** Whether `key` is among the first `count` keys of the object at `depth`. */
function seen(
  level: string[],
  count: number,
  sets: (Set<string> | undefined)[],
  depth: number,
  key: string,
): boolean {
  if (count < LINEAR_KEYS) {
    for (let k = 0; k < count; k++) if (level[k] === key) return true;
    return false;
  }
  // A large object: a linear search would make a payload of many keys quadratic.
  let set = sets[depth];
  if (set === undefined) {
    set = new Set(level.slice(0, count));
    sets[depth] = set;
  }
  if (set.has(key)) return true;
  set.add(key);
  return false;
}

function pathTo(depth: number, isArray: boolean[], keys: string[][], counts: number[]): (string | number)[] {
  const path: (string | number)[] = [];
  for (let d = 1; d < depth; d++) {
    const count = counts[d] as number;
    path.push(isArray[d] ? count : ((keys[d] as string[])[count - 1] as string));
  }
  return path;
}
