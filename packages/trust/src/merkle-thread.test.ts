import { describe, expect, it } from "vitest";
import { until } from "../../../test/harness/until.js";
import { MerkleThread, merkleRootOf, sha256 } from "./merkle-thread.js";
import { signBatch, signBatchRoot } from "./sealed-batch.js";
import { createSigner, generateKey } from "./signing.js";

const signer = createSigner(generateKey("N").seed);

/** Bodies framed one per line, as a decision batch message holds them. */
function framed(count: number) {
  const bodies = Array.from({ length: count }, (_, i) =>
    Buffer.from(`{"n":${i},"pad":"${"é".repeat(i % 7)}"}`),
  );
  const data = Buffer.from(bodies.map((b) => b.toString()).join("\n"));
  const starts: number[] = [];
  const ends: number[] = [];
  let at = 0;
  for (const body of bodies) {
    starts.push(at);
    ends.push(at + body.length);
    at += body.length + 1;
  }
  return { bodies, data, starts, ends };
}

describe("merkle roots off the thread", () => {
  it("sign as signBatch does, for any batch size", async () => {
    const thread = new MerkleThread();
    try {
      await until(() => thread.online, { name: "the hashing thread started" });
      for (const count of [1, 2, 3, 5, 8, 13, 63, 64, 65, 100, 256]) {
        const { bodies, data, starts, ends } = framed(count);
        const expected = signBatch(bodies, signer);
        expect(signBatchRoot(count, merkleRootOf(sha256, data, starts, ends), signer)).toBe(expected);
        expect(signBatchRoot(count, await thread.root(data, starts, ends), signer)).toBe(expected);
      }
      // A batch in shared memory is hashed there as it is.
      const { bodies, data, starts, ends } = framed(70);
      const shared = Buffer.from(new SharedArrayBuffer(data.length));
      shared.set(data);
      expect(signBatchRoot(70, await thread.root(shared, starts, ends), signer)).toBe(
        signBatch(bodies, signer),
      );
      expect(thread.running).toBe(true);
    } finally {
      await thread.close();
    }
  });

  it("refuse what signBatch refuses", async () => {
    const thread = new MerkleThread();
    try {
      await until(() => thread.online, { name: "the hashing thread started" });
      const data = Buffer.from('{"a":1}\n[1]');
      await expect(thread.root(data, [0, 8], [7, 11])).rejects.toThrow(/JSON objects/);
      // The same refusal from the thread, for a batch large enough to go there.
      const large = framed(80);
      const last = large.starts.length - 1;
      large.data[large.starts[last]!] = 0x5b;
      await expect(thread.root(large.data, large.starts, large.ends)).rejects.toThrow(/JSON objects/);
      await expect(thread.root(data, [], [])).rejects.toThrow(/at least one/);
    } finally {
      await thread.close();
    }
  });

  it("are computed here once the thread is gone, none lost, and the failure is told", async () => {
    const failures: string[] = [];
    const thread = new MerkleThread({ onFailure: (reason) => failures.push(reason) });
    await until(() => thread.online, { name: "the hashing thread started" });
    const { bodies, data, starts, ends } = framed(90);
    const pending = thread.root(data, starts, ends);
    await thread.close();
    const after = thread.root(data, starts, ends);
    const expected = signBatch(bodies, signer);
    expect(signBatchRoot(90, await pending, signer)).toBe(expected);
    expect(signBatchRoot(90, await after, signer)).toBe(expected);
    expect(thread.running).toBe(false);
    // A thread closed on purpose is not a failure to tell.
    expect(failures).toEqual([]);
  });
});
