import { hash } from "node:crypto";
import { Worker } from "node:worker_threads";

/**
 * The Merkle root (RFC 6962 hashing, as sealed-batch.ts: leaf = SHA-256(0x00 ‖ body), node =
 * SHA-256(0x01 ‖ left ‖ right), an odd last node promoted) of the bodies `data[starts[i],
 * ends[i])`. Self-contained, using nothing but its arguments and `Buffer`: its source is also what
 * a {@link MerkleThread} runs. Throws TypeError as sealed-batch.ts does for an empty batch or a
 * body that is not a non-empty JSON object.
 */
export function merkleRootOf(
  sha256: (input: Uint8Array) => Uint8Array,
  data: Uint8Array,
  starts: ArrayLike<number>,
  ends: ArrayLike<number>,
): Uint8Array {
  const count = starts.length;
  if (count === 0) throw new TypeError("a sealed batch needs at least one record");
  let widest = 0;
  for (let i = 0; i < count; i++) widest = Math.max(widest, ends[i]! - starts[i]!);
  const leafInput = Buffer.alloc(widest + 1);
  let row: Uint8Array[] = [];
  for (let i = 0; i < count; i++) {
    const start = starts[i]!;
    const end = ends[i]!;
    if (end - start < 3 || data[start] !== 0x7b || data[end - 1] !== 0x7d) {
      throw new TypeError("a sealed batch holds non-empty JSON objects");
    }
    leafInput.set(data.subarray(start, end), 1);
    row.push(sha256(leafInput.subarray(0, end - start + 1)));
  }
  const nodeInput = Buffer.alloc(65, 1);
  while (row.length > 1) {
    const above: Uint8Array[] = [];
    for (let i = 0; i < row.length; i += 2) {
      const right = row[i + 1];
      if (right === undefined) above.push(row[i]!);
      else {
        nodeInput.set(row[i]!, 1);
        nodeInput.set(right, 33);
        above.push(sha256(nodeInput));
      }
    }
    row = above;
  }
  return row[0]!;
}

/**
 * Bodies in a batch below which its root is computed here: handing a batch to the thread and
 * back costs about 0.2 ms of this thread, as much as hashing some 50 records of a kilobyte.
 */
const HASHED_HERE_BELOW = 64;

/** What the thread is sent: one batch's bytes and where each body starts and ends in them. */
interface RootRequest {
  readonly id: number;
  readonly data: Uint8Array;
  readonly starts: Uint32Array;
  readonly ends: Uint32Array;
}

type RootAnswer =
  | { readonly id: number; readonly root: Uint8Array }
  | { readonly id: number; readonly error: string };

const THREAD_SOURCE = `
const { parentPort } = require("node:worker_threads");
const { hash } = require("node:crypto");
const merkleRootOf = ${merkleRootOf.toString()};
const sha256 = (input) => hash("sha256", input, "buffer");
parentPort.on("message", ({ id, data, starts, ends }) => {
  try {
    parentPort.postMessage({ id, root: merkleRootOf(sha256, data, starts, ends) });
  } catch (err) {
    parentPort.postMessage({ id, error: err instanceof Error ? err.message : String(err) });
  }
});
`;

/** SHA-256 on this thread, for {@link merkleRootOf}. */
export function sha256(input: Uint8Array): Uint8Array {
  return hash("sha256", input, "buffer");
}

/**
 * A thread that computes Merkle roots of record batches, so that a thread busy making records
 * hashes none of them (a batch in a SharedArrayBuffer is read there without a copy, any other is
 * copied to it). Roots come back in any order; each request is answered once. Small batches,
 * and every batch until the thread has started and once it failed, are hashed here (none is lost).
 */
export class MerkleThread {
  readonly #worker: Worker;
  readonly #waiting = new Map<
    number,
    { resolve(root: Uint8Array): void; reject(err: Error): void; request: RootRequest }
  >();
  #next = 0;
  #online = false;
  #failure: string | null = null;
  #closed = false;

  constructor(options: { readonly onFailure?: (reason: string) => void } = {}) {
    this.#worker = new Worker(THREAD_SOURCE, { eval: true });
    this.#worker.unref();
    this.#worker.on("online", () => {
      this.#online = true;
    });
    this.#worker.on("message", (answer: RootAnswer) => {
      const waiting = this.#waiting.get(answer.id);
      if (waiting === undefined) return;
      this.#waiting.delete(answer.id);
      if ("root" in answer) waiting.resolve(answer.root);
      else waiting.reject(new TypeError(answer.error));
    });
    const fail = (reason: string) => {
      if (this.#failure !== null) return;
      this.#failure = reason;
      if (!this.#closed) options.onFailure?.(reason);
      for (const [id, waiting] of this.#waiting) {
        this.#waiting.delete(id);
        this.#answerHere(waiting.request, waiting.resolve, waiting.reject);
      }
    };
    this.#worker.on("error", (err) => fail(`the hashing thread failed: ${err.message}`));
    this.#worker.on("exit", (code) => fail(`the hashing thread exited (code ${code})`));
  }

  /** Whether the thread has started (roots asked for before are computed here). */
  get online(): boolean {
    return this.#online;
  }

  /** Whether roots are still computed on the thread (false once it failed or was closed). */
  get running(): boolean {
    return this.#failure === null;
  }

  /**
   * The Merkle root of the bodies `data[starts[i], ends[i])`, computed on the thread (here for a
   * batch too small to pay for the handover, before the thread started and once it failed).
   * Rejects with TypeError as {@link merkleRootOf} throws.
   */
  root(data: Uint8Array, starts: readonly number[], ends: readonly number[]): Promise<Uint8Array> {
    const request: RootRequest = {
      id: this.#next++,
      data,
      starts: Uint32Array.from(starts),
      ends: Uint32Array.from(ends),
    };
    return new Promise((resolve, reject) => {
      if (starts.length < HASHED_HERE_BELOW || !this.#online || this.#failure !== null) {
        this.#answerHere(request, resolve, reject);
        return;
      }
      this.#waiting.set(request.id, { resolve, reject, request });
      this.#worker.postMessage(request);
    });
  }

  /** Stops the thread; roots still waiting are computed here. */
  async close(): Promise<void> {
    this.#closed = true;
    await this.#worker.terminate();
  }

  #answerHere(request: RootRequest, resolve: (root: Uint8Array) => void, reject: (err: Error) => void): void {
    try {
      resolve(merkleRootOf(sha256, request.data, request.starts, request.ends));
    } catch (err) {
      reject(err instanceof Error ? err : new Error(String(err)));
    }
  }
}
