import { resourceNames } from "@arbiter/protocol";
import { describe, expect, it } from "vitest";
import { expiryTimerSubject, parseExpiryTimer } from "./expiry-timers.js";

const names = resourceNames("acme");
const bytes = (text: string) => new TextEncoder().encode(text);

describe("expiry timer messages", () => {
  it("live under their expiry's subject", () => {
    expect(expiryTimerSubject(names, 1_900_000_000)).toBe("acme.expiries.1900000000");
  });

  it("parse only as a timer stored under its own expiry's subject", () => {
    const subject = expiryTimerSubject(names, 1_900_000_000);
    expect(parseExpiryTimer(names, subject, bytes('{"expiresAt":1900000000}'))).toEqual({
      expiresAt: 1_900_000_000,
    });
    expect(parseExpiryTimer(names, "acme.expiries.5", bytes('{"expiresAt":1900000000}'))).toBeNull();
    expect(parseExpiryTimer(names, subject, bytes("not json"))).toBeNull();
    expect(parseExpiryTimer(names, subject, bytes('{"expiresAt":1900000000.5}'))).toBeNull();
    expect(parseExpiryTimer(names, subject, bytes('{"expiresAt":1900000000,"extra":1}'))).toBeNull();
  });
});
