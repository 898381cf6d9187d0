import { describe, expect, it } from "vitest";
import { isPortTaken, parseEphemeralRange, reserveRoutePorts, routePortRange } from "./route-ports.js";

describe("parseEphemeralRange", () => {
  it("reads the two ports of ip_local_port_range", () => {
    expect(parseEphemeralRange("32768\t60999\n")).toEqual({ low: 32_768, high: 60_999 });
  });

  it.each(["", "32768", "1 2 3", "a b", "60999 32768", "0 100", "1024 70000"])("rejects %j", (text) => {
    expect(parseEphemeralRange(text)).toBeUndefined();
  });
});

describe("routePortRange", () => {
  it("lies wholly below the ephemeral range", () => {
    expect(routePortRange({ low: 32_768, high: 60_999 })).toEqual({ low: 10_000, high: 32_767 });
  });

  it("is undefined when too few ports lie below it", () => {
    expect(routePortRange({ low: 10_500, high: 60_999 })).toBeUndefined();
    expect(routePortRange({ low: 1_024, high: 65_535 })).toBeUndefined();
  });
});

describe("reserveRoutePorts", () => {
  it("finds distinct ports outside the ephemeral range that can be bound", async () => {
    const ports = await reserveRoutePorts("127.0.0.1", 5);
    expect(new Set(ports).size).toBe(5);
    for (const port of ports) expect(port).toBeGreaterThanOrEqual(10_000);
  });
});

describe("isPortTaken", () => {
  it("recognises nats-server's bind failure", () => {
    expect(isPortTaken(new Error("listen tcp 127.0.0.1:45557: bind: address already in use"))).toBe(true);
    expect(isPortTaken(new Error("nats-server exited with code 1"))).toBe(false);
    expect(isPortTaken("address already in use")).toBe(false);
  });
});
