import { parentPort, workerData } from "node:worker_threads";
import { RevisionCache } from "@arbiter/rules";
import { type ReplayChunk, replayChunk } from "./replay-chunk.js";
import type { ReplayWorkerData } from "./replay-pool.js";

// A replay worker thread: folds the history it is given once, then replays each chunk it is sent
// and posts the results back in the order the chunks came.
const data = workerData as ReplayWorkerData;
const cache = new RevisionCache(data.trust);
for (const event of data.events) cache.add(event);
parentPort?.on("message", (chunk: ReplayChunk) => {
  parentPort?.postMessage(replayChunk(chunk, cache, data.window));
});
