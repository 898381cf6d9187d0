import type { ClaimsV1 } from "@arbiter/protocol";
import { generateKey } from "@arbiter/trust";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { until } from "./harness/index.js";
import { componentBody, defaultRules, untilIndexCaughtUp } from "./support/fanout.js";
import { type FanoutArbiter, startFanoutArbiter } from "./support/fanout-setup.js";

// A host chooses when its claims expire, so it can make a timer fire every second. A worker
// whose timer fires looks through the whole index: read from the server, that was every entry
// of every host read again each second. The workers' mirrors hold the index already.

const EXPIRED = "component claims have expired";
const RULES = defaultRules("allow", [
  { id: "no-expired-claims", effect: "deny", when: "claims != null && claims.expired", message: EXPIRED },
]);
/** Cached decisions besides the expiring one, none of them expiring. */
const OTHERS = 150;

let arbiter: FanoutArbiter;

beforeAll(async () => {
  arbiter = await startFanoutArbiter({ rules: RULES });
}, 60_000);

afterAll(async () => {
  await arbiter?.close();
});

const claimsExpiring = (inSeconds: number | null): ClaimsV1 => ({
  publicKey: generateKey("M").publicKey,
  issuer: generateKey("A").publicKey,
  issuedAt: String(Math.floor(Date.now() / 1000) - 60),
  expiresAt: inSeconds === null ? null : Math.floor(Date.now() / 1000) + inSeconds,
  expired: false,
});

describe("an expiry timer that fires", () => {
  it("looks through the worker's mirror of the index, reading no entry from the server", async () => {
    const client = await arbiter.startHost();
    const lasting = claimsExpiring(null);
    for (let i = 0; i < OTHERS; i++) {
      const answer = await client.evaluateStartComponent({
        ...componentBody(`lasting-${i}`),
        claims: lasting,
      });
      expect(answer.permitted).toBe(true);
    }
    const expiring = claimsExpiring(4);
    const answer = await client.evaluateStartComponent({ ...componentBody("expiring"), claims: expiring });
    expect(answer.permitted).toBe(true);
    await untilIndexCaughtUp(arbiter.nc);
    // Every read of an entry from the server: a direct get of an `e.` key, or the listing of them.
    const reads: string[] = [];
    const watched = arbiter.nc.subscribe("$JS.API.>", {
      callback: (_err, msg) => {
        const body = msg.string();
        if (msg.subject.includes("KV_arbiter-active") && /\.e\.|"e\.>"|\.e\.>/.test(body)) {
          reads.push(`${msg.subject} ${body}`);
        }
      },
    });
    await arbiter.nc.flush();
    const expiringKey = [...client.cacheEntries()].find(([, e]) => e.requestId === answer.requestId)?.[0];
    await until(() => client.cacheEntries().get(expiringKey!)?.permitted === false, {
      name: "the expiring permit overridden",
      timeout: 30_000,
      interval: 50,
    });
    await arbiter.nc.flush();
    watched.unsubscribe();
    expect(client.cacheEntries().get(expiringKey!)?.message).toBe(EXPIRED);
    expect([...client.cacheEntries().values()].filter((e) => e.permitted)).toHaveLength(OTHERS);
    expect(reads).toEqual([]);
  }, 60_000);
});
