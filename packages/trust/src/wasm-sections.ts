import { ArbiterError, ErrorCode } from "@arbiter/protocol";

// The WebAssembly binary layout, as far as signing needs it (core spec §5.5, component model
// Binary.md): an 8-byte preamble, then sections of one id byte, a LEB128 u32 length and the
// content. A component's core module (id 1) and component (id 4) sections hold complete binaries
// of their own. Written here because no maintained JavaScript library exposes raw sections with
// their offsets; the rules follow wasmparser's, which the wasmCloud host uses.

/** The preamble of a core module: magic, version 1. */
export const WASM_MODULE_HEADER: readonly number[] = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];
/** The preamble of a component: magic, version 0x0d, layer 1. */
export const WASM_COMPONENT_HEADER: readonly number[] = [0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00];

/** Inputs larger than this are refused before parsing (wasmparser's limit is 1 GiB). */
export const MAX_WASM_BYTES = 256 * 1024 * 1024;
/** Components nest modules and components; deeper nesting than this is refused. */
const MAX_NESTING = 64;
const CUSTOM_SECTION = 0;
const COMPONENT_CORE_MODULE_SECTION = 1;
const COMPONENT_COMPONENT_SECTION = 4;

/** Whether a binary is a core module or a component. */
export type WasmEncoding = "module" | "component";

/** One section of a parsed binary; `content` is a view into the input, not a copy. */
export interface WasmSection {
  readonly id: number;
  /** Offset of the id byte in the outermost input. */
  readonly offset: number;
  /** The section's bytes after its length. */
  readonly content: Uint8Array;
  /** False when the length was written with more LEB128 bytes than its value needs. */
  readonly minimalLength: boolean;
  /** A custom section's name (id 0). */
  readonly customName?: string;
  /** A component's nested core module (id 1) or component (id 4), parsed. */
  readonly nested?: WasmBinary;
}

/** A parsed module or component: its encoding and its sections in order. */
export interface WasmBinary {
  readonly encoding: WasmEncoding;
  readonly sections: readonly WasmSection[];
}

/** Thrown for bytes that are not a well-formed binary; `offset` is where reading failed. */
export class MalformedWasmError extends ArbiterError {
  readonly offset: number;

  constructor(message: string, offset: number, options?: ErrorOptions) {
    super(ErrorCode.InvalidWasm, `${message} (at byte ${offset})`, options);
    this.name = "MalformedWasmError";
    this.offset = offset;
  }
}

/** True when `err` is a {@link MalformedWasmError}. */
export function isMalformedWasmError(err: unknown): err is MalformedWasmError {
  return err instanceof MalformedWasmError;
}

/**
 * Reads an unsigned LEB128 u32 at `offset` as wasmparser does: at most 5 bytes, the unused bits of
 * the fifth zero; longer-than-needed encodings are accepted. Throws {@link MalformedWasmError}.
 */
export function readVarU32(bytes: Uint8Array, offset: number): { value: number; length: number } {
  let value = 0;
  for (let i = 0; i < 5; i++) {
    const byte = bytes[offset + i];
    if (byte === undefined)
      throw new MalformedWasmError("truncated: a LEB128 integer runs past the end", offset);
    if (i === 4 && byte > 0x0f) {
      throw new MalformedWasmError(
        byte & 0x80 ? "a LEB128 u32 is longer than 5 bytes" : "a LEB128 integer does not fit in 32 bits",
        offset + i,
      );
    }
    value += (byte & 0x7f) * 2 ** (7 * i);
    if ((byte & 0x80) === 0) return { value, length: i + 1 };
  }
  // The fifth byte's check above makes this unreachable; kept for the type checker.
  throw new MalformedWasmError("a LEB128 u32 is longer than 5 bytes", offset + 4);
}

/** The minimal unsigned LEB128 encoding of a u32. */
export function encodeVarU32(value: number): Uint8Array {
  if (!Number.isInteger(value) || value < 0 || value > 0xffff_ffff) {
    throw new RangeError(`${value} is not a u32`);
  }
  const out: number[] = [];
  let rest = value;
  do {
    const low = rest % 0x80;
    rest = Math.floor(rest / 0x80);
    out.push(rest === 0 ? low : low | 0x80);
  } while (rest !== 0);
  return Uint8Array.from(out);
}

/**
 * Parses a module or component into its sections, recursing into a component's nested modules
 * and components. Throws {@link MalformedWasmError} for a bad preamble, a truncated section, a
 * length past the end, an over-long LEB128, a custom section name that is not UTF-8, or input
 * larger than {@link MAX_WASM_BYTES}.
 */
export function parseWasm(bytes: Uint8Array): WasmBinary {
  if (bytes.length > MAX_WASM_BYTES) {
    throw new MalformedWasmError(`the input has ${bytes.length} bytes, more than ${MAX_WASM_BYTES}`, 0);
  }
  return parseBinary(bytes, 0, bytes.length, 0);
}

function parseBinary(bytes: Uint8Array, start: number, end: number, depth: number): WasmBinary {
  if (depth > MAX_NESTING)
    throw new MalformedWasmError(`components nested deeper than ${MAX_NESTING}`, start);
  if (end - start < 8) throw new MalformedWasmError("truncated: shorter than the 8-byte preamble", start);
  const encoding = encodingOf(bytes.subarray(start, start + 8), start);
  const sections: WasmSection[] = [];
  let at = start + 8;
  while (at < end) {
    const offset = at;
    const id = bytes[at] ?? 0;
    if (id & 0x80) throw new MalformedWasmError(`malformed section id ${id}`, at);
    const length = readVarU32(bytes.subarray(0, end), at + 1);
    const contentStart = at + 1 + length.length;
    const contentEnd = contentStart + length.value;
    if (contentEnd > end) {
      throw new MalformedWasmError(
        `truncated: section ${id} declares ${length.value} bytes, ${end - contentStart} remain`,
        offset,
      );
    }
    const content = bytes.subarray(contentStart, contentEnd);
    const minimalLength = length.length === encodeVarU32(length.value).length;
    sections.push({
      id,
      offset,
      content,
      minimalLength,
      ...(id === CUSTOM_SECTION ? { customName: customName(bytes, contentStart, contentEnd) } : {}),
      ...(encoding === "component" && isNestedSection(id)
        ? { nested: parseNested(bytes, id, contentStart, contentEnd, depth) }
        : {}),
    });
    at = contentEnd;
  }
  return { encoding, sections };
}

function isNestedSection(id: number): boolean {
  return id === COMPONENT_CORE_MODULE_SECTION || id === COMPONENT_COMPONENT_SECTION;
}

function parseNested(bytes: Uint8Array, id: number, start: number, end: number, depth: number): WasmBinary {
  const nested = parseBinary(bytes, start, end, depth + 1);
  const expected: WasmEncoding = id === COMPONENT_CORE_MODULE_SECTION ? "module" : "component";
  if (nested.encoding !== expected) {
    throw new MalformedWasmError(`a nested ${expected} section holds a ${nested.encoding}`, start);
  }
  return nested;
}

function encodingOf(preamble: Uint8Array, offset: number): WasmEncoding {
  if (!WASM_MODULE_HEADER.slice(0, 4).every((b, i) => preamble[i] === b)) {
    throw new MalformedWasmError("not WebAssembly: the input does not start with \\0asm", offset);
  }
  if (WASM_MODULE_HEADER.every((b, i) => preamble[i] === b)) return "module";
  if (WASM_COMPONENT_HEADER.every((b, i) => preamble[i] === b)) return "component";
  const version = Buffer.from(preamble.subarray(4, 8)).toString("hex");
  throw new MalformedWasmError(`unknown binary version 0x${version}`, offset + 4);
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

function customName(bytes: Uint8Array, start: number, end: number): string {
  const length = readVarU32(bytes.subarray(0, end), start);
  const nameStart = start + length.length;
  if (nameStart + length.value > end) {
    throw new MalformedWasmError("truncated: a custom section's name runs past the section", start);
  }
  try {
    return utf8.decode(bytes.subarray(nameStart, nameStart + length.value));
  } catch (err) {
    throw new MalformedWasmError("a custom section's name is not UTF-8", nameStart, { cause: err });
  }
}

/**
 * Writes `binary` back out with its canonical preamble, keeping the sections `keep` accepts (at
 * every depth): each as its id, its MINIMAL LEB128 length and its content; nested binaries are
 * re-encoded the same way. Contents are copied byte for byte.
 */
export function encodeWasm(
  binary: WasmBinary,
  keep: (section: WasmSection) => boolean = () => true,
): Uint8Array {
  const parts: Uint8Array[] = [];
  writeBinary(binary, keep, parts);
  return Buffer.concat(parts);
}

function writeBinary(binary: WasmBinary, keep: (section: WasmSection) => boolean, parts: Uint8Array[]): void {
  parts.push(Uint8Array.from(binary.encoding === "module" ? WASM_MODULE_HEADER : WASM_COMPONENT_HEADER));
  for (const section of binary.sections) {
    if (!keep(section)) continue;
    const content = section.nested ? encodeWasm(section.nested, keep) : section.content;
    parts.push(Uint8Array.of(section.id), encodeVarU32(content.length), content);
  }
}

/** A custom section (`id` 0) named `name` holding `data`, encoded minimally. */
export function encodeCustomSection(name: string, data: Uint8Array): Uint8Array {
  const nameBytes = new TextEncoder().encode(name);
  const content = Buffer.concat([encodeVarU32(nameBytes.length), nameBytes, data]);
  return Buffer.concat([Uint8Array.of(CUSTOM_SECTION), encodeVarU32(content.length), content]);
}

/** A custom section's data: its content after the name. */
export function customSectionData(section: WasmSection): Uint8Array {
  const length = readVarU32(section.content, 0);
  return section.content.subarray(length.length + length.value);
}
