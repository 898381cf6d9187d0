import type { ActiveDecisionV1 } from "@arbiter/protocol";
import { openJetStreamActiveIndex } from "@arbiter/store";
import type { NatsConnection } from "@nats-io/nats-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectTo, type NatsServerProcess, startNatsServer } from "./harness/index.js";

// A scan writes its chunk of changed entries (and their records) at once, and a host chooses how
// large those entries are. Every write's acknowledgement timer ran from the moment it was handed to
// the client, and a chunk of a host's 860 KB entries (500 of them, against `arbiter up`) queued in
// the client longer than the timeout, and the scan failed on its first delivery. Writes now keep
// at most 16 MiB unacknowledged, and the rest leave as room is made, each timed from when it leaves.

let server: NatsServerProcess;
let nc: NatsConnection;

beforeAll(async () => {
  server = await startNatsServer();
  nc = await connectTo(server.url);
});

afterAll(async () => {
  await nc?.close();
  await server?.stop();
});

function entry(i: number, pad: string): ActiveDecisionV1 {
  return {
    lattice: "default",
    host: "NLARGE",
    cacheKey: `startComponent:large-${i}`,
    requestId: `r-${i}`,
    kind: "startComponent",
    permitted: true,
    message: "fine",
    revision: 2,
    decisionId: `d-${i}`,
    seq: i + 1,
    evaluatedAt: "2026-01-01T00:00:00.000Z",
    rejection: null,
    request: { pad },
    trust: { verified: false, reasons: [] },
    expiresAt: null,
  };
}

describe("writes of large index entries at once", () => {
  it("are each acknowledged within the timeout, however many are handed over together", async () => {
    const index = await openJetStreamActiveIndex(nc, { timeoutMs: 2000 });
    try {
      const pad = "x".repeat(900_000);
      const results = await Promise.allSettled(
        Array.from({ length: 400 }, (_, i) => index.put(entry(i, pad))),
      );
      expect(results.filter((r) => r.status === "rejected").map((r) => String(r.reason))).toEqual([]);
      expect((await index.keys()).length).toBe(400);
    } finally {
      await index.close();
    }
  }, 60_000);
});
