import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  batchSeals,
  sealBatch,
  signBatch,
  splitSealedJson,
  verifyBatch,
  verifySealedJson,
} from "./sealed-batch.js";
import { createSigner, generateKey } from "./signing.js";

const worker = createSigner(generateKey("N").seed);
const records = (n: number) =>
  Array.from({ length: n }, (_, i) => JSON.stringify({ decisionId: `d${i}`, permitted: i % 2 === 0 }));

describe("sealed batches", () => {
  it("makes every record of every batch size verifiable on its own", () => {
    for (const size of [1, 2, 3, 4, 5, 7, 8, 9, 16, 33, 100]) {
      const sealed = sealBatch(records(size), worker);
      for (const [i, text] of sealed.entries()) {
        expect(verifySealedJson(text, worker.publicKey), `record ${i} of ${size}`).toBe(true);
        expect(JSON.parse(text)).toMatchObject({ decisionId: `d${i}`, proof: { index: i, size } });
      }
      // One signature for the whole batch.
      expect(new Set(sealed.map((t) => splitSealedJson(t)?.signature)).size).toBe(1);
    }
  });

  it("seals a batch from its texts and signature alone, as signing it did", () => {
    const texts = records(7);
    const bodies = texts.map((text) => Buffer.from(text));
    const signature = signBatch(bodies, worker);
    const seals = batchSeals(bodies, signature);
    const sealed = texts.map((text, i) => `${text.slice(0, -1)}${seals[i]}`);
    expect(sealed).toEqual(sealBatch(texts, worker));
    for (const text of sealed) expect(verifySealedJson(text, worker.publicKey)).toBe(true);
    // Sealed with another batch's signature, nothing verifies.
    const other = signBatch([Buffer.from('{"x":1}')], worker);
    const forged = batchSeals(bodies, other).map((seal, i) => `${texts[i]!.slice(0, -1)}${seal}`);
    for (const text of forged) expect(verifySealedJson(text, worker.publicKey)).toBe(false);
  });

  it("refuses what cannot be sealed", () => {
    expect(() => signBatch([], worker)).toThrow(/at least one record/);
    expect(() => signBatch([Buffer.from("[1]")], worker)).toThrow(/JSON objects/);
    expect(() => batchSeals([Buffer.from('{"a":1}')], 'x"y')).toThrow(/base64url/);
  });

  it("keeps the record's own fields and recovers its exact body", () => {
    const [text] = sealBatch(['{"a":1,"signature":"nested is fine"}'], worker);
    expect(splitSealedJson(text!)?.body).toBe('{"a":1,"signature":"nested is fine"}');
  });

  it("fails for any change to a record, its proof, its position or the key", () => {
    const sealed = sealBatch(records(5), worker);
    const text = sealed[2]!;
    expect(verifySealedJson(text.replace('"permitted":true', '"permitted":false'), worker.publicKey)).toBe(
      false,
    );
    expect(verifySealedJson(text.replace('"index":2', '"index":3'), worker.publicKey)).toBe(false);
    expect(verifySealedJson(text.replace('"size":5', '"size":6'), worker.publicKey)).toBe(false);
    expect(verifySealedJson(text, createSigner(generateKey("N").seed).publicKey)).toBe(false);
    const path = splitSealedJson(text)!.proof.path;
    expect(verifySealedJson(text.replace(path[0]!, path[1]!), worker.publicKey)).toBe(false);
    expect(verifySealedJson('{"a":1}', worker.publicKey)).toBe(false);
  });

  it("a proof from one batch does not verify a record of another", () => {
    fc.assert(
      fc.property(fc.integer({ min: 2, max: 40 }), fc.nat(), (size, pick) => {
        const a = sealBatch(records(size), worker);
        const b = sealBatch(
          records(size).map((r) => r.replace("d", "e")),
          worker,
        );
        const i = pick % size;
        const forged =
          splitSealedJson(b[i]!)!.body.slice(0, -1) + a[i]!.slice(splitSealedJson(a[i]!)!.body.length - 1);
        return verifySealedJson(a[i]!, worker.publicKey) && !verifySealedJson(forged, worker.publicKey);
      }),
      { numRuns: 50 },
    );
  });

  it("verifies a whole stored batch with one signature check, and nothing changed in it", () => {
    const bodies = records(5).map((text) => Buffer.from(text));
    const signature = signBatch(bodies, worker);
    expect(verifyBatch(bodies, signature, worker.publicKey)).toBe(true);
    expect(verifyBatch(bodies.slice(1), signature, worker.publicKey)).toBe(false);
    expect(verifyBatch([...bodies].reverse(), signature, worker.publicKey)).toBe(false);
    expect(verifyBatch(bodies, signature, generateKey("N").publicKey)).toBe(false);
    expect(verifyBatch([Buffer.from("not json")], signature, worker.publicKey)).toBe(false);
    expect(verifyBatch(bodies, "not a signature!", worker.publicKey)).toBe(false);
  });
});
