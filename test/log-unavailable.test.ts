import { resourceNames } from "@arbiter/protocol";
import { jetstreamManager } from "@nats-io/jetstream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type SingleNodeArbiter, startSingleNodeArbiter } from "./support/arbiter.js";
import { fixtureBytes } from "./support/fixtures.js";

describe("when the decision log is unavailable", () => {
  let arbiter: SingleNodeArbiter;
  const ask = () => arbiter.ask(fixtureBytes("start-provider"));

  beforeAll(async () => {
    arbiter = await startSingleNodeArbiter();
  });

  afterAll(async () => {
    await arbiter?.stop();
  });

  it("denies what it would permit, says why, and permits again once the log is back", async () => {
    expect((await ask()).permitted).toBe(true);

    const jsm = await jetstreamManager(arbiter.nc);
    const decisions = await jsm.streams.info(resourceNames().decisionsStream);
    await jsm.streams.delete(decisions.config.name);
    const denied = await ask();
    expect(denied).toMatchObject({
      permitted: false,
      message: expect.stringMatching(/decision log is unavailable/),
    });
    expect(arbiter.worker.stats().logFailures).toBe(1);
    expect(arbiter.worker.status).toBe("ready");

    await jsm.streams.add(decisions.config);
    expect((await ask()).permitted).toBe(true);
  });
});
