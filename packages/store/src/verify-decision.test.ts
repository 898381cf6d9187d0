import type { UnsignedDecisionV1 } from "@arbiter/protocol";
import { createSigner, generateKey, type Signer } from "@arbiter/trust";
import { describe, expect, it } from "vitest";
import { decisionBatchFromTexts, sealedDecisionTexts } from "./decision-batch.js";
import { verifyDecision } from "./verify-decision.js";

const enrolledWorker = createSigner(generateKey("N").seed);
const stranger = createSigner(generateKey("N").seed);

const here = "A".repeat(26);
const elsewhere = "B".repeat(26);

/** A decision at `revision` of `deployment`, sealed in a batch of one signed by `signer`, as read from the log. */
function sealed(signer: Signer, revision: number, deployment: string | null | "absent" = here): string {
  const record: UnsignedDecisionV1 = {
    decisionId: `d-${revision}`,
    requestId: "r",
    lattice: "default",
    host: "N",
    kind: "startComponent",
    cacheKey: "startComponent:x",
    lineage: "v1",
    request: null,
    rejection: null,
    permitted: true,
    message: "ok",
    decidingRule: null,
    matchedRules: [],
    dryRunRules: [],
    ruleErrors: [],
    revision,
    ...(deployment === "absent" ? {} : { deployment }),
    evaluatedAt: "2026-01-01T00:00:00.000Z",
    worker: { id: "w", publicKey: signer.publicKey },
    trust: { verified: false, reasons: [] },
    cause: "request",
    latencyMicros: 1,
  };
  const batch = decisionBatchFromTexts(
    [{ decisionId: record.decisionId, text: JSON.stringify(record) }],
    signer,
  );
  return sealedDecisionTexts(batch.lines, batch.signature)[0]!;
}

const enrollment = [{ publicKey: enrolledWorker.publicKey, name: "w", from: 3, to: 6 }];

describe("verifying a decision", () => {
  it("accepts a decision signed by a key enrolled at its revision", () => {
    expect(
      verifyDecision(sealed(enrolledWorker, 3), { deployment: here, workers: enrollment }),
    ).toMatchObject({ valid: true });
    expect(
      verifyDecision(sealed(enrolledWorker, 5), { deployment: here, workers: enrollment }),
    ).toMatchObject({ valid: true });
  });

  it("refuses one signed by a fresh key, whatever it claims, unless that key is configured", () => {
    expect(verifyDecision(sealed(stranger, 4), { deployment: here, workers: enrollment })).toMatchObject({
      valid: false,
      reason: `signed by worker key ${stranger.publicKey}, which was never enrolled`,
    });
    expect(
      verifyDecision(sealed(stranger, 4), {
        deployment: here,
        workers: enrollment,
        configured: [stranger.publicKey],
      }),
    ).toMatchObject({
      valid: true,
    });
  });

  it("refuses one made before the key was enrolled or after it was removed", () => {
    for (const revision of [2, 6, 9]) {
      expect(
        verifyDecision(sealed(enrolledWorker, revision), { deployment: here, workers: enrollment }),
      ).toMatchObject({
        valid: false,
        reason: expect.stringMatching(new RegExp(`was not enrolled at revision ${revision}$`)),
      });
    }
  });

  it("refuses a tampered record or one that is not a decision", () => {
    const text = sealed(enrolledWorker, 4).replace('"permitted":true', '"permitted":false');
    expect(verifyDecision(text, { deployment: here, workers: enrollment })).toMatchObject({
      valid: false,
      reason: expect.stringMatching(/does not verify/),
    });
    expect(verifyDecision('{"n":1}', { deployment: here, workers: enrollment })).toEqual({
      valid: false,
      reason: "not a sealed decision record",
      decision: null,
    });
  });

  it("refuses one made in another deployment, or naming none, even when signed by an enrolled key", () => {
    const workers = { deployment: here, workers: enrollment };
    expect(verifyDecision(sealed(enrolledWorker, 4, elsewhere), workers)).toMatchObject({
      valid: false,
      reason: `made in deployment ${elsewhere}, not in this one (${here})`,
    });
    expect(verifyDecision(sealed(enrolledWorker, 4, null), workers)).toMatchObject({
      valid: false,
      reason: `made in deployment (none: before the genesis event), not in this one (${here})`,
    });
    expect(verifyDecision(sealed(enrolledWorker, 4, "absent"), workers)).toMatchObject({
      valid: false,
      reason: "names no deployment (written before decisions were bound to theirs)",
    });
    expect(
      verifyDecision(sealed(enrolledWorker, 4), { deployment: null, workers: enrollment }),
    ).toMatchObject({
      valid: false,
      reason: "the rules stream has no genesis event: no deployment to check against",
    });
    // The deployment is signed with the record: rewriting it breaks the seal.
    const moved = sealed(enrolledWorker, 4, elsewhere).replace(elsewhere, here);
    expect(verifyDecision(moved, workers)).toMatchObject({
      valid: false,
      reason: expect.stringMatching(/does not verify/),
    });
  });
});
