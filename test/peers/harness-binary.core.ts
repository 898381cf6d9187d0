import { findNatsServer } from "@arbiter/embedded-nats";
import { describe, expect, inject, it } from "vitest";
import { startNatsServer } from "../harness/index.js";
import "./core-tests.js";

// Part of each "nats-server vX.Y.Z" project of vitest.peers.config.ts: the core tests beside it are
// only worth their name if the harness starts the release the project is named after.

describe("the nats-server release under test", () => {
  it("is what the harness finds and starts", async () => {
    const expected = inject("natsServer");
    expect(await findNatsServer({ install: false })).toBe(expected.bin);
    await using server = await startNatsServer();
    const varz = (await (await fetch(`${server.monitorUrl}/varz`)).json()) as { version: string };
    expect(`v${varz.version}`).toBe(expected.version);
  });
});
