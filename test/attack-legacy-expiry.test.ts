import { DEFAULT_POLICY_TOPIC, PolicyOverrideV1 } from "@arbiter/protocol";
import { generateKey } from "@arbiter/trust";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { until } from "./harness/index.js";
import { defaultRules } from "./support/fanout.js";
import { type FanoutArbiter, startFanoutArbiter } from "./support/fanout-setup.js";
import { legacyStartActor } from "./support/fixtures.js";

// A 0.82 or Elixir host sends its actor's claims in `source` (expiresAt among them), and the rules
// see them as the claims of a 1.x request. The index read the expiry from the 1.x places only, so
// such a permit was never armed: its claims expired and it stayed permitted on the host.

const EXPIRED = "component claims have expired";

let arbiter: FanoutArbiter;

beforeAll(async () => {
  arbiter = await startFanoutArbiter({
    workers: ["w1"],
    hearChanges: true,
    rules: defaultRules("allow", [
      { id: "no-expired-claims", effect: "deny", when: "claims != null && claims.expired", message: EXPIRED },
    ]),
  });
}, 60_000);

afterAll(async () => {
  await arbiter?.close();
});

describe("claims of a 0.82 request that expire", () => {
  it("revoke the permit they earned, with an override naming its request_id", async () => {
    const request = legacyStartActor("d4b1c1d0-0000-4000-8000-0000000000e1");
    request.source = {
      ...request.source,
      publicKey: generateKey("M").publicKey,
      issuer: generateKey("A").publicKey,
      issuedOn: "2026-01-01T00:00:00Z",
      expiresAt: Math.floor(Date.now() / 1000) + 3,
    };
    request.host.publicKey = generateKey("N").publicKey;
    const nc = await arbiter.connect("host");
    const answer = (
      await nc.request(DEFAULT_POLICY_TOPIC, JSON.stringify(request), { timeout: 10_000 })
    ).json<{
      permitted: boolean;
    }>();
    expect(answer.permitted).toBe(true);
    const override = await until(
      async () => {
        await arbiter.flushHeard();
        return arbiter.heard
          .map((text) => PolicyOverrideV1.parse(JSON.parse(text)))
          .find((o) => o.request_id === request.requestId);
      },
      { name: "the expired permit's override", timeout: 20_000 },
    );
    expect(override).toMatchObject({ requestId: request.requestId, permitted: false, message: EXPIRED });
  }, 60_000);
});
