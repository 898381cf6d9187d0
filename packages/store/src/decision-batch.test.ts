import { createSigner, generateKey, verifySealedJson } from "@arbiter/trust";
import { describe, expect, it } from "vitest";
import { decisionBatchFromTexts, sealedDecisionTexts } from "./decision-batch.js";

const worker = createSigner(generateKey("N").seed);

describe("sealedDecisionTexts", () => {
  it("seals every line of a signed batch", () => {
    const texts = ['{"n":1}', '{"n":"ü"}', '{"n":3}'];
    const batch = decisionBatchFromTexts(
      texts.map((text, i) => ({ decisionId: `d${i}`, text })),
      worker,
    );
    const sealed = sealedDecisionTexts(batch.lines, batch.signature);
    expect(sealed).toHaveLength(3);
    for (const [i, text] of sealed.entries()) {
      expect(text.startsWith(texts[i]!.slice(0, -1))).toBe(true);
      expect(verifySealedJson(text, worker.publicKey)).toBe(true);
    }
  });

  it("returns the lines as stored when the message cannot be sealed", () => {
    const lines = Buffer.from('{"n":1}\nnot json');
    expect(sealedDecisionTexts(lines, "c2ln")).toEqual(['{"n":1}', "not json"]);
    expect(sealedDecisionTexts(Buffer.from('{"n":1}'), undefined)).toEqual(['{"n":1}']);
    expect(sealedDecisionTexts(Buffer.from('{"n":1}'), "not base64url!")).toEqual(['{"n":1}']);
    expect(sealedDecisionTexts(new Uint8Array(), "c2ln")).toEqual([""]);
  });
});
