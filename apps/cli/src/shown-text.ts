/** Values longer than this are cut to {@link SHOWN_CHARS} characters and their length. */
const MAX_SHOWN_CHARS = 256;
const SHOWN_CHARS = 200;

/**
 * Whether the UTF-16 unit `c` changes how the text around it reads without being seen:
 * bidirectional overrides, embeddings, isolates and marks, and C0 and C1 control characters.
 */
function isMisleading(c: number): boolean {
  return (
    c <= 0x1f ||
    (c >= 0x7f && c <= 0x9f) ||
    c === 0x061c ||
    c === 0x200e ||
    c === 0x200f ||
    (c >= 0x202a && c <= 0x202e) ||
    (c >= 0x2066 && c <= 0x2069)
  );
}

/** Whether `text` holds a character {@link shownText} writes as an escape. Pure. */
export function hasMisleadingCharacters(text: string): boolean {
  for (let i = 0; i < text.length; i++) if (isMisleading(text.charCodeAt(i))) return true;
  return false;
}

/**
 * A recorded string (chosen by whoever holds a host credential) as reports and the terminal show it: cut past {@link MAX_SHOWN_CHARS} (saying how long it
 * was), and each character that would change how it reads (a U+202E turning a host key around)
 * written as its `\uXXXX` escape. Pure.
 */
export function shownText(text: string): string {
  let shown = text;
  if (text.length > MAX_SHOWN_CHARS) {
    const cut = text.slice(0, SHOWN_CHARS);
    const whole = /[\ud800-\udbff]$/.test(cut) ? cut.slice(0, -1) : cut;
    shown = `${whole}… (${text.length} characters)`;
  }
  if (!hasMisleadingCharacters(shown)) return shown;
  let out = "";
  for (let i = 0; i < shown.length; i++) {
    const c = shown.charCodeAt(i);
    out += isMisleading(c) ? `\\u${c.toString(16).padStart(4, "0")}` : shown[i];
  }
  return out;
}
