import { describe, expect, it } from "vitest";
import { whilePlacing } from "./placement-retry.js";

describe("whilePlacing", () => {
  it("creates again while the cluster is still placing its peers, pausing longer each time", async () => {
    const pauses: number[] = [];
    let attempts = 0;
    const created = await whilePlacing(
      async () => {
        attempts++;
        if (attempts < 4) throw new Error("no suitable peers for placement, peer offline");
        return "stream";
      },
      { pause: async (ms) => pauses.push(ms) },
    );
    expect(created).toBe("stream");
    expect(pauses).toEqual([250, 500, 1000]);
  });

  it("throws any other failure at once", async () => {
    let attempts = 0;
    await expect(
      whilePlacing(
        async () => {
          attempts++;
          throw new Error("insufficient resources");
        },
        { pause: async () => {} },
      ),
    ).rejects.toThrow("insufficient resources");
    expect(attempts).toBe(1);
  });

  it("gives up past its wait, with the cluster's own answer", async () => {
    await expect(
      whilePlacing(
        async () => {
          throw new Error("no suitable peers for placement");
        },
        { waitMs: 0, pause: async () => {} },
      ),
    ).rejects.toThrow("no suitable peers for placement");
  });
});
