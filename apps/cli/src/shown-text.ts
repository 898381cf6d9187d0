/** Values longer than this are cut to {@link SHOWN_CHARS} characters and their length. */
const MAX_SHOWN_CHARS = 256;
const SHOWN_CHARS = 200;

/**
 * Characters that change how the text around them reads without being seen: bidirectional
 * overrides, embeddings, isolates and marks, and control characters.
 */
const MISLEADING = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

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
  return shown.replace(MISLEADING, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
}
