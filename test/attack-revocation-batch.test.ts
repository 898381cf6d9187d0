import { type RevocationV1, resourceNames } from "@arbiter/protocol";
import { type ArbiterStore, openJetStreamStore } from "@arbiter/store";
import { jetstream } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectTo, type NatsServerProcess, startNatsServer, until } from "./harness/index.js";
import { runArbiter, spawnArbiter } from "./support/cli.js";

// Whoever holds a worker's credential may publish any revocation message: batches made to crash
// `arbiter revocations list|tail` or to reach the reader's terminal with escape sequences.

const HOST = `N${"A".repeat(55)}`;
const ESCAPES = "\u001b[2J\u001b]0;owned\u0007\u009b31m\u202eevil";

let server: NatsServerProcess;
let nc: NatsConnection;
let store: ArbiterStore;

beforeAll(async () => {
  server = await startNatsServer();
  nc = await connectTo(server.url);
  store = await openJetStreamStore(nc);
});

afterAll(async () => {
  await store?.close();
  await nc?.close();
  await server?.stop();
});

function record(requestId: string): RevocationV1 {
  return {
    requestId: `${requestId}${ESCAPES}`,
    lattice: "default",
    host: HOST,
    cacheKey: `startComponent:c${ESCAPES}_ghcr.io/x:1`,
    from: { permitted: true, message: "ok" },
    to: { permitted: false, message: `denied ${ESCAPES}` },
    revision: 3,
    at: "2026-01-01T00:00:01.000Z",
  };
}

function nested(depth: number): string {
  return `${"[".repeat(depth)}${"]".repeat(depth)}`;
}

/** Publishes the forged messages: one batch with two records among elements that are not, and two that hold none. */
async function forge(tag: string): Promise<void> {
  const js = jetstream(nc);
  const subject = resourceNames().revocationsSubject;
  const elements = [
    JSON.stringify({ ...record(`${tag}-1`), extra: ESCAPES }),
    "42",
    "null",
    JSON.stringify(ESCAPES),
    nested(100_000),
    JSON.stringify({ ...record(`${tag}-bad`), revision: "3" }),
    JSON.stringify(record(`${tag}-2`)),
  ];
  await js.publish(subject, `{"revocations":[${elements.join(",")}]}`);
  // As many elements as max_payload holds, none a record; then a batch nested as deep as it goes.
  const limit = nc.info!.max_payload - 1024;
  await js.publish(subject, `{"revocations":[${"0,".repeat(Math.floor(limit / 2) - 20)}0]}`);
  await js.publish(subject, `{"revocations":[${nested(Math.floor(limit / 2) - 20)}]}`);
}

/** Whether `text` holds a character a terminal acts on or that turns text around (a line break aside). */
function reachesTheTerminal(text: string): boolean {
  return [...text].some((ch) => {
    const c = ch.codePointAt(0)!;
    return (
      (c <= 0x1f && c !== 0x0a) ||
      (c >= 0x7f && c <= 0x9f) ||
      (c >= 0x202a && c <= 0x202e) ||
      (c >= 0x2066 && c <= 0x2069)
    );
  });
}

describe("forged revocation batches", () => {
  it("revocations list prints their records escaped, skips what is not one, and --json prints the records alone", async () => {
    await forge("list");
    const env = { NATS_URL: server.url };
    const text = await runArbiter(["revocations", "list"], env);
    expect(text.code, text.stderr).toBe(0);
    const rows = text.stdout.trimEnd().split("\n").slice(1);
    expect(rows).toHaveLength(2);
    expect(reachesTheTerminal(text.stdout)).toBe(false);
    expect(rows[0]).toContain("list-1\\u001b[2J\\u001b]0;owned\\u0007\\u009b31m\\u202eevil");
    expect(rows[1]).toContain("list-2");

    const json = await runArbiter(["revocations", "list", "--json"], env);
    expect(json.code, json.stderr).toBe(0);
    expect(JSON.parse(json.stdout)).toEqual([record("list-1"), record("list-2")]);
  }, 60_000);

  it("revocations tail prints them escaped as they are recorded, in text and as JSON lines", async () => {
    const env = { NATS_URL: server.url };
    // From a time after the list's messages: the tails then print these, whenever they start.
    const since = new Date().toISOString();
    await forge("tail");
    await using text = spawnArbiter(["revocations", "tail", "--since", since], env);
    await using json = spawnArbiter(["revocations", "tail", "--json", "--since", since], env);
    const rows = () => text.stdout().trimEnd().split("\n").slice(1);
    await until(() => rows().length === 2, { name: "the text tail's two rows", timeout: 20_000 });
    expect(reachesTheTerminal(text.stdout())).toBe(false);
    expect(rows()[0]).toContain("tail-1\\u001b[2J");
    expect(rows()[1]).toContain("tail-2");
    const lines = () => json.stdout().split("\n").filter(Boolean);
    await until(() => lines().length === 2, { name: "the JSON tail's two lines", timeout: 20_000 });
    expect(lines().map((l) => JSON.parse(l))).toEqual([record("tail-1"), record("tail-2")]);
    // Still following after the forged messages.
    await forge("later");
    await until(() => rows().length === 4 && lines().length === 4, {
      name: "both tails' next rows",
      timeout: 20_000,
    });
    expect(text.child.exitCode).toBeNull();
    expect(json.child.exitCode).toBeNull();
  }, 60_000);
});
