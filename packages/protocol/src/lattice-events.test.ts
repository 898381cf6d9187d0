import { describe, expect, it, vi } from "vitest";
import {
  MAX_LATTICE_EVENT_CONTAINERS,
  MAX_LATTICE_EVENT_DEPTH,
  MAX_PING_ANSWER_BYTES,
  parseLatticeEvent,
  pingAnswerHost,
} from "./lattice-events.js";

const HOST = "NBX6HJKOXUFNPXNSB2PZAVJWXDQQHPGDNV3XB4YZZJW4BNOV6QBHU5HO";
const bytes = (value: unknown) => new TextEncoder().encode(JSON.stringify(value));

/** A CloudEvent as the 1.x host crate serialises one (`wasmbus/event.rs`). */
function event(name: string, data: unknown, source = HOST) {
  return {
    specversion: "1.0",
    id: "01936f0e-2f4c-7a3e-8b9d-3c2f1e0d4b5a",
    type: `com.wasmcloud.lattice.${name}`,
    source,
    datacontenttype: "application/json",
    time: "2026-12-02T04:00:00.123456789Z",
    data,
  };
}

describe("parseLatticeEvent", () => {
  it("reads the host key of a 1.x host_stopped from its source (data is only labels)", () => {
    expect(
      parseLatticeEvent(bytes(event("host_stopped", { labels: { zone: "a" } })), "host_stopped"),
    ).toEqual({
      ok: true,
      event: { name: "host_stopped", host: HOST, id: "01936f0e-2f4c-7a3e-8b9d-3c2f1e0d4b5a" },
    });
  });

  it("takes a heartbeat whose inventory names its source, and refuses one naming another host", () => {
    const inventory = { components: [], providers: [], host_id: HOST, labels: {}, uptime_seconds: 30 };
    expect(parseLatticeEvent(bytes(event("host_heartbeat", inventory)), "host_heartbeat")).toMatchObject({
      ok: true,
      event: { name: "host_heartbeat", host: HOST },
    });
    const other = { ...inventory, host_id: "NOTHER" };
    expect(parseLatticeEvent(bytes(event("host_heartbeat", other)), "host_heartbeat")).toMatchObject({
      ok: false,
    });
  });

  it("on the 0.82 subject takes every kind, and ignores the ones it does not act on", () => {
    expect(parseLatticeEvent(bytes(event("host_started", { labels: {} })), null)).toMatchObject({
      ok: true,
      event: { name: "host_started" },
    });
    expect(parseLatticeEvent(bytes(event("component_scaled", {})), null)).toEqual({ ok: true, event: null });
  });

  it("refuses what is not a lattice CloudEvent, never throwing", () => {
    const bad = [
      new Uint8Array([0xff, 0xfe]),
      bytes("host_stopped"),
      bytes({ ...event("host_stopped", {}), specversion: "0.3" }),
      bytes({ ...event("host_stopped", {}), source: "" }),
      bytes({ ...event("host_stopped", {}), source: "N.>" }),
      bytes({ ...event("host_stopped", {}), type: "com.example.host_stopped" }),
      bytes(event("host_heartbeat", { labels: {} })),
      bytes(event("host_stopped", { labels: "x" })),
    ];
    for (const message of bad) expect(parseLatticeEvent(message, null).ok).toBe(false);
    expect(parseLatticeEvent(bytes(event("host_started", {})), "host_stopped").ok).toBe(false);
  });
});

describe("lattice events nested past any host's", () => {
  // JSON.parse takes ten times longer per byte on nesting than on a flat text: 1 MB of "[" cost a
  // worker a third of a second, so a host publishing such events kept every worker busy.
  const deep = (depth: number) => "[".repeat(depth) + "]".repeat(depth);
  const text = (data: string) =>
    new TextEncoder().encode(
      JSON.stringify(event("host_stopped", { labels: {}, x: 0 })).replace("0}", `${data}}`),
    );

  it("are refused before they are parsed, naming the limit", () => {
    expect(parseLatticeEvent(text(deep(400_000)), "host_stopped")).toEqual({
      ok: false,
      reason: `nested deeper than ${MAX_LATTICE_EVENT_DEPTH} levels`,
    });
    expect(parseLatticeEvent(text(deep(MAX_LATTICE_EVENT_DEPTH)), "host_stopped").ok).toBe(false);
    const answer = `{"success":true,"response":{"id":"${HOST}","x":${deep(400_000)}}}`;
    expect(pingAnswerHost(new TextEncoder().encode(answer))).toBeNull();
  });

  it("of more objects and arrays than any inventory, nested shallow, are refused before they are parsed", () => {
    // As costly to parse as one nesting: a megabyte of brackets 60 deep, repeated, took 0.15 s.
    const shallow = `[${Array(8_000).fill(deep(60)).join(",")}]`;
    const parse = vi.spyOn(JSON, "parse");
    try {
      expect(parseLatticeEvent(text(shallow), "host_stopped")).toEqual({
        ok: false,
        reason: `more than ${MAX_LATTICE_EVENT_CONTAINERS} objects and arrays`,
      });
      const answer = `{"success":true,"response":{"id":"${HOST}","x":${shallow}}}`;
      expect(pingAnswerHost(new TextEncoder().encode(answer))).toBeNull();
      expect(parse).not.toHaveBeenCalled();
    } finally {
      parse.mockRestore();
    }
    const inventory = `[${Array(2_000).fill('{"id":"M","annotations":{}}').join(",")}]`;
    expect(parseLatticeEvent(text(inventory), "host_stopped").ok).toBe(true);
  });

  it("are taken up to the limit, brackets inside strings not counted", () => {
    expect(parseLatticeEvent(text(deep(MAX_LATTICE_EVENT_DEPTH - 3)), "host_stopped").ok).toBe(true);
    expect(parseLatticeEvent(text(JSON.stringify("[".repeat(10_000))), "host_stopped").ok).toBe(true);
    expect(parseLatticeEvent(text(JSON.stringify('\\"[[[[')), "host_stopped").ok).toBe(true);
  });
});

describe("pingAnswerHost", () => {
  it("reads the id of a 1.x CtlResponse<Host>", () => {
    const answer = { success: true, message: "", response: { friendly_name: "x", id: HOST, labels: {} } };
    expect(pingAnswerHost(bytes(answer))).toBe(HOST);
    expect(pingAnswerHost(bytes({ ...answer, success: false }))).toBeNull();
    expect(pingAnswerHost(bytes({ id: HOST }))).toBeNull();
    expect(pingAnswerHost(new Uint8Array([1, 2, 3]))).toBeNull();
  });

  it("does not decode an answer larger than any host's, so a flood of big ones costs little to read", () => {
    const labels = (bytes: number) => ({ pad: "x".repeat(bytes) });
    const answer = (bytes: number) => ({ success: true, response: { id: HOST, labels: labels(bytes) } });
    expect(pingAnswerHost(bytes(answer(MAX_PING_ANSWER_BYTES - 200)))).toBe(HOST);
    expect(pingAnswerHost(bytes(answer(MAX_PING_ANSWER_BYTES)))).toBeNull();
  });
});
