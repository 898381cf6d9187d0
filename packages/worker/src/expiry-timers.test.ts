import { readFileSync } from "node:fs";
import { type ActiveDecisionV1, decodePolicyRequest } from "@arbiter/protocol";
import { compileRules, initialRulesetState, parseRulesDocument, type RulesetState } from "@arbiter/rules";
import { activeEntryKey } from "@arbiter/store";
import { describe, expect, it } from "vitest";
import { projectDecision, reevaluate } from "./active-projection.js";
import { decisionRecord } from "./decide.js";
import {
  couldBeArmed,
  EXACT_EXPIRY_WINDOW_S,
  EXPIRY_RECHECK_MS,
  expiryRecordId,
  expiryStandsIn,
  expiryStep,
  expiryTimerAt,
  expiryWaitMs,
  isExpiredPermit,
} from "./expiry-timers.js";

const FIXTURE = new URL("../../../test/data/wasmcloud-v1/start-component.json", import.meta.url);
const EXPIRES_AT = 1_900_000_000;
const AT_EXPIRY = new Date(EXPIRES_AT * 1000);
const BEFORE = new Date(EXPIRES_AT * 1000 - 1);

function ruleset(): RulesetState {
  const document = parseRulesDocument(
    JSON.stringify({
      version: 1,
      default: "allow",
      rules: [
        { id: "no-expired", effect: "deny", when: "claims != null && claims.expired", message: "expired" },
      ],
    }),
  );
  return { ...initialRulesetState(), revision: 4, document, compiled: compileRules(document) };
}

/** The index entry of the fixture request, its claims expiring at `expiresAt`, permitted at `now`. */
function entry(expiresAt: number | null, overrides: Partial<ActiveDecisionV1> = {}): ActiveDecisionV1 {
  const raw = JSON.parse(readFileSync(FIXTURE, "utf8")) as { request: { claims: Record<string, unknown> } };
  raw.request.claims = { ...raw.request.claims, expiresAt, expired: false };
  const decoded = decodePolicyRequest(new TextEncoder().encode(JSON.stringify(raw)));
  if (!decoded.ok) throw new Error(decoded.reason);
  const permitted = {
    permitted: true,
    message: "no rule matched; default is allow",
    decidingRule: null,
    matchedRules: [],
    dryRunRules: [],
    errors: [],
  };
  const record = decisionRecord(decoded.request, permitted, {
    decisionId: "01KAQ4Z0000000000000000000",
    revision: 4,
    deployment: null,
    now: BEFORE,
    worker: { id: "w1", publicKey: "NABNN3XIJODL7AFVQMGZUGLQZK7FTLAOAWZXUELUORK2NPCZOK4XGHWN" },
    latencyMicros: 1,
  });
  const projection = projectDecision(record, 1, null);
  if (projection.action !== "put") throw new Error("expected an entry");
  return { ...projection.entry, ...overrides };
}

describe("expiry timers", () => {
  it("wait until the expiry second, at most the recheck cap, and are due from then on", () => {
    expect(expiryWaitMs(EXPIRES_AT, BEFORE.getTime())).toBe(1);
    expect(expiryWaitMs(EXPIRES_AT, AT_EXPIRY.getTime())).toBeNull();
    expect(expiryWaitMs(EXPIRES_AT, AT_EXPIRY.getTime() + 5)).toBeNull();
    expect(expiryWaitMs(EXPIRES_AT, 0)).toBe(EXPIRY_RECHECK_MS);
    expect(expiryWaitMs(EXPIRES_AT, 0, 2000)).toBe(2000);
  });

  it("are armed for permitted entries with an expiry, and the projection re-evaluates one already past it", () => {
    expect(expiryStep(entry(EXPIRES_AT), BEFORE)).toBe("arm");
    expect(expiryStep(entry(EXPIRES_AT), AT_EXPIRY)).toBe("due");
    expect(expiryStep(entry(null), BEFORE)).toBe("none");
    expect(expiryStep(entry(EXPIRES_AT, { permitted: false }), BEFORE)).toBe("none");
    expect(expiryStep(entry(EXPIRES_AT, { rejection: "bad input" }), BEFORE)).toBe("none");
    expect(expiryStep(entry(EXPIRES_AT, { expiresAt: 1.5 }), BEFORE)).toBe("none");
  });

  it("re-evaluate only permitted entries whose claims have expired", () => {
    expect(isExpiredPermit(entry(EXPIRES_AT), AT_EXPIRY)).toBe(true);
    expect(isExpiredPermit(entry(EXPIRES_AT), BEFORE)).toBe(false);
    expect(isExpiredPermit(entry(EXPIRES_AT, { permitted: false }), AT_EXPIRY)).toBe(false);
    expect(isExpiredPermit(entry(null), AT_EXPIRY)).toBe(false);
  });

  it("flip a permit when the rules deny expired claims, though the host said they were not", () => {
    expect(reevaluate(entry(EXPIRES_AT), ruleset(), BEFORE)?.changed).toBe(false);
    expect(reevaluate(entry(EXPIRES_AT), ruleset(), AT_EXPIRY)).toMatchObject({
      changed: true,
      evaluation: { permitted: false, message: "expired", decidingRule: "no-expired" },
    });
  });

  it("record each expiry revocation once, apart from the record a rules revision made", () => {
    const e = entry(EXPIRES_AT);
    expect(expiryRecordId(4, e)).toBe(`4:${activeEntryKey(e)}:expired:${e.decisionId}`);
    expect(expiryRecordId(4, e)).not.toBe(`4:${activeEntryKey(e)}`);
  });
});

describe("the timer standing for an expiry", () => {
  const NOW = 1_900_000_000;

  it("is the expiry itself within the hour, then the expiry rounded down to a grid doubling with the distance", () => {
    expect(expiryTimerAt(NOW + 1, NOW)).toBe(NOW + 1);
    expect(expiryTimerAt(NOW + EXACT_EXPIRY_WINDOW_S, NOW)).toBe(NOW + EXACT_EXPIRY_WINDOW_S);
    expect(expiryTimerAt(NOW - 5, NOW)).toBe(NOW - 5);
    const far = NOW + 10 * 86_400 + 17;
    const at = expiryTimerAt(far, NOW);
    expect(at).toBeGreaterThan(NOW);
    expect(at).toBeLessThanOrEqual(far);
    // d = 10 days + 17 s is in (G, 2G] for G = 3600·128 (5.3 days).
    expect(at % (3600 * 128)).toBe(0);
    expect(expiryTimerAt(Number.MAX_SAFE_INTEGER, NOW)).toBeLessThanOrEqual(Number.MAX_SAFE_INTEGER);
    expect(expiryTimerAt(Number.MAX_SAFE_INTEGER, NOW)).toBeGreaterThan(NOW);
  });

  it("takes few distinct seconds for a host's many distinct expiries, each before its expiry", () => {
    const timers = new Set<number>();
    let misplaced = 0;
    for (let i = 0; i < 100_000; i++) {
      const expiresAt = NOW + EXACT_EXPIRY_WINDOW_S + 1 + i * 99_991;
      const at = expiryTimerAt(expiresAt, NOW);
      if (at <= NOW || at > expiresAt) misplaced++;
      timers.add(at);
    }
    expect(misplaced).toBe(0);
    // 100,000 expiries up to 317 years away: two timers per doubling of the distance at most.
    expect(timers.size).toBeLessThanOrEqual(2 * 22);
  });

  it("tells a timer a worker could have armed from one no worker arms (far, off its grid)", () => {
    expect(couldBeArmed(NOW + 10, NOW)).toBe(true);
    expect(couldBeArmed(NOW - 10, NOW)).toBe(true);
    expect(couldBeArmed(NOW + EXACT_EXPIRY_WINDOW_S + 60, NOW)).toBe(true);
    expect(couldBeArmed(NOW + 5 * 86_400 + 1, NOW)).toBe(false);
    for (const distance of [2 * 3600 + 5, 86_400 * 3, 86_400 * 400, 3600 * 2 ** 30]) {
      const at = expiryTimerAt(NOW + distance, NOW);
      // Armed at NOW, seen by a worker whose clock is a minute behind or ahead, or much later.
      for (const seen of [NOW - 60, NOW + 60, Math.floor((NOW + at) / 2)]) {
        expect(couldBeArmed(at, seen)).toBe(true);
      }
    }
  });

  it("is followed, when it fires, by a finer one for each entry it stood for, down to the expiry", () => {
    const expiresAt = NOW + 400 * 86_400 + 1234;
    let now = NOW;
    const fired: number[] = [];
    for (;;) {
      const at = expiryTimerAt(expiresAt, now);
      fired.push(at);
      if (at === expiresAt) break;
      expect(expiryStandsIn(at, expiresAt)).toBe(true);
      now = at;
    }
    expect(fired.length).toBeLessThanOrEqual(16);
    expect(fired).toEqual([...fired].sort((a, b) => a - b));
    // An exact timer stands for no other expiry; a grid timer not for expiries past its grid.
    expect(expiryStandsIn(NOW + 7, NOW + 8)).toBe(false);
    expect(expiryStandsIn(3600 * 3, 3600 * 3 + 3599)).toBe(true);
    expect(expiryStandsIn(3600 * 3, 3600 * 4)).toBe(false);
    expect(expiryStandsIn(3600 * 4, 3600 * 4 - 1)).toBe(false);
  });
});
