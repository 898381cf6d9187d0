import { describe, expect, it } from "vitest";
import { claimsAt, compileRules, type EvaluationFacts, evaluate } from "./index.js";

const claims = { publicKey: "MCOMP", issuer: "AISSUER", issuedAt: "1714506509", expired: false };
const expiresAt = 1_767_225_600; // 2026-01-01T00:00:00Z

const facts = (now: Date, expiry: number | null, expired = false): EvaluationFacts => ({
  kind: "startComponent",
  host: { publicKey: "NHOST", lattice: "default", labels: {} },
  subject: { id: "c", imageRef: "ghcr.io/x/c:0.1.0", annotations: {}, maxInstances: 1 },
  claims: { ...claims, expiresAt: expiry, expired },
  invocation: null,
  input: { request: { claims: { ...claims, expiresAt: expiry, expired } } },
  now,
  trust: { verified: false, reasons: [] },
});

const noExpired = compileRules({
  version: 1,
  default: "allow",
  rules: [{ id: "no-expired", effect: "deny", when: "claims != null && claims.expired", message: "expired" }],
});

describe("claims.expired as the rules see it", () => {
  it("is the host's flag before expiresAt", () => {
    const before = new Date(expiresAt * 1000 - 1);
    expect(claimsAt({ ...claims, expiresAt }, before)).toEqual({ ...claims, expiresAt, expired: false });
    expect(evaluate(noExpired, facts(before, expiresAt)).permitted).toBe(true);
  });

  it("is true from expiresAt on, whatever the host said", () => {
    for (const now of [new Date(expiresAt * 1000), new Date(expiresAt * 1000 + 86_400_000)]) {
      expect(claimsAt({ ...claims, expiresAt }, now)?.expired).toBe(true);
      expect(evaluate(noExpired, facts(now, expiresAt))).toMatchObject({
        permitted: false,
        message: "expired",
        decidingRule: "no-expired",
      });
    }
  });

  it("stays true when the host said so, and false without an expiry", () => {
    const now = new Date(0);
    expect(claimsAt({ ...claims, expiresAt, expired: true }, now)?.expired).toBe(true);
    expect(evaluate(noExpired, facts(now, expiresAt, true)).permitted).toBe(false);
    expect(claimsAt({ ...claims, expiresAt: null }, new Date(8.64e15))?.expired).toBe(false);
    expect(claimsAt(null, now)).toBeNull();
  });

  it("leaves input as received and is the same for CEL and the fast path", () => {
    const now = new Date(expiresAt * 1000);
    const viaCel = compileRules({
      version: 1,
      default: "allow",
      rules: [{ id: "cel", effect: "deny", when: "claims.expired == true && size(kind) > 0" }],
    });
    const viaInput = compileRules({
      version: 1,
      default: "deny",
      rules: [{ id: "raw", effect: "allow", when: "input.request.claims.expired == false" }],
    });
    expect(evaluate(viaCel, facts(now, expiresAt)).permitted).toBe(false);
    expect(evaluate(noExpired, facts(now, expiresAt)).permitted).toBe(false);
    expect(evaluate(viaInput, facts(now, expiresAt)).permitted).toBe(true);
  });
});
