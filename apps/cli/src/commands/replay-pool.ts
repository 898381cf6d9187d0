import { Worker } from "node:worker_threads";
import type { RulesetTrust, StoredRuleEvent } from "@arbiter/rules";
import type { AuditWindow } from "@arbiter/store";
import type { ChunkResult, ReplayChunk } from "./replay-chunk.js";

/** What each replay worker thread starts from. */
export interface ReplayWorkerData {
  readonly trust: RulesetTrust;
  /** The rule events to fold, from revision 1, in order. */
  readonly events: readonly StoredRuleEvent[];
  readonly window: AuditWindow;
}

interface Waiting {
  resolve(result: ChunkResult): void;
  reject(err: Error): void;
}

const WORKER_URL = new URL("./replay-worker.js", import.meta.url);

/**
 * Worker threads that replay chunks of records, each having folded the same history once.
 * Chunks go to the threads in turn; each thread answers its chunks in order, so the results of
 * `submit`, awaited in the order submitted, come in stream order.
 */
export class ReplayPool {
  readonly #workers: Worker[] = [];
  readonly #waiting: Waiting[][] = [];
  #next = 0;
  #failure: Error | null = null;

  constructor(threads: number, data: ReplayWorkerData) {
    for (let i = 0; i < threads; i++) {
      const worker = new Worker(WORKER_URL, { workerData: data });
      const waiting: Waiting[] = [];
      worker.on("message", (result: ChunkResult) => waiting.shift()?.resolve(result));
      const fail = (err: Error) => {
        this.#failure ??= err;
        for (const w of waiting.splice(0)) w.reject(err);
      };
      worker.on("error", fail);
      worker.on("exit", (code) => fail(new Error(`a replay worker thread exited (code ${code})`)));
      this.#workers.push(worker);
      this.#waiting.push(waiting);
    }
  }

  /** Replays `chunk` in the next thread. Rejects when a thread has failed. */
  submit(chunk: ReplayChunk): Promise<ChunkResult> {
    if (this.#failure !== null) return Promise.reject(this.#failure);
    const at = this.#next;
    this.#next = (at + 1) % this.#workers.length;
    return new Promise<ChunkResult>((resolve, reject) => {
      this.#waiting[at]!.push({ resolve, reject });
      this.#workers[at]!.postMessage(chunk);
    });
  }

  /** Stops every thread. */
  async close(): Promise<void> {
    this.#failure ??= new Error("the replay pool is closed");
    await Promise.all(this.#workers.map((w) => w.terminate()));
  }
}
