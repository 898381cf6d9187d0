import { generateKey } from "@arbiter/trust";
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { ChangesSubjects, isHostSubjectToken } from "./changes-subjects.js";

const TOPIC = "wasmcloud.policy.changes";

describe("ChangesSubjects", () => {
  it("puts every override on the shared topic unless per host", () => {
    const subjects = new ChangesSubjects({ changesTopic: TOPIC, perHost: false });
    expect(subjects.subjectFor(generateKey("N").publicKey)).toBe(TOPIC);
    expect(subjects.subjectFor(">")).toBe(TOPIC);
    expect(subjects.sharedFallback).toBe(0);
  });

  it("puts an override on its host's own subject when per host", () => {
    const subjects = new ChangesSubjects({ changesTopic: TOPIC, perHost: true });
    const [a, b] = [generateKey("N").publicKey, generateKey("N").publicKey];
    expect(subjects.subjectFor(a)).toBe(`${TOPIC}.${a}`);
    expect(subjects.subjectFor(a)).toBe(`${TOPIC}.${a}`);
    expect(subjects.subjectFor(b)).toBe(`${TOPIC}.${b}`);
    expect(subjects.subjectFor(a)).toBe(`${TOPIC}.${a}`);
    expect(subjects.sharedFallback).toBe(0);
  });

  it("sends a host key that is no subject token to the shared topic, counting each override", () => {
    const lines: string[] = [];
    const log = pino({ level: "warn" }, { write: (line: string) => lines.push(line) });
    const subjects = new ChangesSubjects({ changesTopic: TOPIC, perHost: true, log });
    const bad = [">", "*", "a.b", "x y", "", "a\tb", "a\u0000b", "N\u00e9", "x".repeat(129), "x".repeat(300)];
    for (const host of bad) {
      expect(subjects.subjectFor(host), JSON.stringify(host)).toBe(TOPIC);
      expect(subjects.subjectFor(host), JSON.stringify(host)).toBe(TOPIC);
    }
    expect(subjects.sharedFallback).toBe(bad.length * 2);
    expect(subjects.takeSharedFallback()).toBe(bad.length * 2);
    expect(subjects.takeSharedFallback()).toBe(0);
    subjects.flush();
    const logged = lines.map(
      (l) => JSON.parse(l) as { sharedFallback: number; host: string; hostLength: number },
    );
    expect(logged.reduce((n, l) => n + l.sharedFallback, 0)).toBe(bad.length * 2);
    // The example key is quoted and cut, whatever its length.
    expect(logged[0]?.host).toBe(JSON.stringify(">"));
    for (const line of logged) expect(line.host ?? "").not.toContain("x".repeat(81));
  });

  it("takes letters, digits, - and _ up to 128 of them as a host token", () => {
    expect(isHostSubjectToken(generateKey("N").publicKey)).toBe(true);
    expect(isHostSubjectToken("host_1-a")).toBe(true);
    expect(isHostSubjectToken("x".repeat(128))).toBe(true);
    expect(isHostSubjectToken("x".repeat(129))).toBe(false);
    expect(isHostSubjectToken("")).toBe(false);
    expect(isHostSubjectToken("a.b")).toBe(false);
  });
});
