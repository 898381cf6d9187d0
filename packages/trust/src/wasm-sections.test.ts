import { describe, expect, it } from "vitest";
import {
  encodeCustomSection,
  encodeVarU32,
  encodeWasm,
  isMalformedWasmError,
  MAX_WASM_BYTES,
  parseWasm,
  readVarU32,
  WASM_COMPONENT_HEADER,
  WASM_MODULE_HEADER,
} from "./wasm-sections.js";

/** `(module (func (export "f") (result i32) i32.const 42))`, assembled by hand. */
const MODULE = Uint8Array.from([
  ...WASM_MODULE_HEADER,
  ...[0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7f], // type: () -> i32
  ...[0x03, 0x02, 0x01, 0x00], // function: type 0
  ...[0x07, 0x05, 0x01, 0x01, 0x66, 0x00, 0x00], // export "f" func 0
  ...[0x0a, 0x06, 0x01, 0x04, 0x00, 0x41, 0x2a, 0x0b], // code: i32.const 42
]);

function malformed(run: () => unknown): string {
  try {
    run();
  } catch (err) {
    if (isMalformedWasmError(err)) return err.message;
    throw err;
  }
  throw new Error("expected a MalformedWasmError");
}

describe("LEB128", () => {
  it("encodes minimally and reads what it wrote", () => {
    for (const value of [0, 1, 127, 128, 300, 16_383, 16_384, 2 ** 31, 0xffff_ffff]) {
      const bytes = encodeVarU32(value);
      expect(readVarU32(bytes, 0)).toEqual({ value, length: bytes.length });
    }
    expect([...encodeVarU32(624_485)]).toEqual([0xe5, 0x8e, 0x26]);
  });

  it("reads a longer-than-needed encoding as wasmparser does, and refuses six bytes or bits past 32", () => {
    expect(readVarU32(Uint8Array.of(0x85, 0x80, 0x80, 0x80, 0x00), 0)).toEqual({ value: 5, length: 5 });
    expect(malformed(() => readVarU32(Uint8Array.of(0x80, 0x80, 0x80, 0x80, 0x80, 0x00), 0))).toMatch(
      /longer than 5 bytes/,
    );
    expect(malformed(() => readVarU32(Uint8Array.of(0xff, 0xff, 0xff, 0xff, 0x1f), 0))).toMatch(
      /does not fit in 32 bits/,
    );
    expect(malformed(() => readVarU32(Uint8Array.of(0x80, 0x80), 0))).toMatch(/truncated/);
  });
});

describe("parseWasm", () => {
  it("splits a module into its sections and re-encodes it byte for byte", () => {
    const binary = parseWasm(MODULE);
    expect(binary.encoding).toBe("module");
    expect(binary.sections.map((s) => s.id)).toEqual([1, 3, 7, 10]);
    expect(binary.sections.every((s) => s.minimalLength)).toBe(true);
    expect(Buffer.from(encodeWasm(binary)).equals(Buffer.from(MODULE))).toBe(true);
  });

  it("re-encodes a non-minimal section length minimally and keeps every content byte", () => {
    const padded = Uint8Array.from([
      ...WASM_MODULE_HEADER,
      ...[0x01, 0x85, 0x80, 0x80, 0x80, 0x00, 0x01, 0x60, 0x00, 0x01, 0x7f],
      ...MODULE.slice(15),
    ]);
    const binary = parseWasm(padded);
    expect(binary.sections[0]?.minimalLength).toBe(false);
    expect(Buffer.from(encodeWasm(binary)).equals(Buffer.from(MODULE))).toBe(true);
  });

  it("parses a component's nested core module and drops a section at every depth when asked", () => {
    const inner = Buffer.concat([MODULE, encodeCustomSection("drop-me", Uint8Array.of(1, 2, 3))]);
    const component = Buffer.concat([
      Uint8Array.from(WASM_COMPONENT_HEADER),
      Uint8Array.of(0x01),
      encodeVarU32(inner.length),
      inner,
      encodeCustomSection("drop-me", Uint8Array.of(4)),
      encodeCustomSection("keep", Uint8Array.of(5)),
    ]);
    const binary = parseWasm(component);
    expect(binary.encoding).toBe("component");
    expect(binary.sections[0]?.nested?.sections.map((s) => s.customName ?? s.id)).toEqual([
      1,
      3,
      7,
      10,
      "drop-me",
    ]);
    const kept = encodeWasm(binary, (s) => s.customName !== "drop-me");
    const expected = Buffer.concat([
      Uint8Array.from(WASM_COMPONENT_HEADER),
      Uint8Array.of(0x01),
      encodeVarU32(MODULE.length),
      MODULE,
      encodeCustomSection("keep", Uint8Array.of(5)),
    ]);
    expect(Buffer.from(kept).equals(expected)).toBe(true);
  });

  it("refuses truncated, foreign and over-long input with a named error", () => {
    expect(malformed(() => parseWasm(MODULE.slice(0, MODULE.length - 3)))).toMatch(
      /truncated: section 10 declares 6 bytes, 3 remain/,
    );
    expect(malformed(() => parseWasm(MODULE.slice(0, 5)))).toMatch(/preamble/);
    expect(malformed(() => parseWasm(new TextEncoder().encode("#!/bin/sh\necho hi\n")))).toMatch(/\\0asm/);
    expect(malformed(() => parseWasm(Uint8Array.of(0, 0x61, 0x73, 0x6d, 2, 0, 0, 0)))).toMatch(
      /unknown binary version 0x02000000/,
    );
    expect(
      malformed(() => parseWasm(Uint8Array.of(...WASM_MODULE_HEADER, 0x01, 0xff, 0xff, 0xff, 0xff, 0xff))),
    ).toMatch(/longer than 5 bytes/);
    expect(
      malformed(() => parseWasm(Uint8Array.of(...WASM_MODULE_HEADER, 0x00, 0x03, 0x02, 0xff, 0xfe))),
    ).toMatch(/name is not UTF-8/);
    expect(malformed(() => parseWasm(new Uint8Array(MAX_WASM_BYTES + 1)))).toMatch(/more than/);
  });

  it("refuses a nested module section that holds a component", () => {
    const component = Buffer.concat([
      Uint8Array.from(WASM_COMPONENT_HEADER),
      Uint8Array.of(0x01, 0x08),
      Uint8Array.from(WASM_COMPONENT_HEADER),
    ]);
    expect(malformed(() => parseWasm(component))).toMatch(/a nested module section holds a component/);
  });
});
