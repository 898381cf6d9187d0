import { WorkerStatusV1 } from "@arbiter/protocol";
import type { NatsConnection } from "@nats-io/nats-core";

/** How long to gather worker status answers, in milliseconds. */
const GATHER_MS = 500;
/** After an answer, how long without another one ends the gathering early. */
const STALL_MS = 200;

/**
 * Asks every running worker for its status on `statusSubject` and returns the answers that parse
 * as {@link WorkerStatusV1} (others are dropped). No responders, or none in time, is an empty list.
 */
export async function askWorkers(nc: NatsConnection, statusSubject: string): Promise<WorkerStatusV1[]> {
  return (await gatherWorkers(nc, statusSubject)).map((answer) => answer.status);
}

/** One worker's answer and when it arrived (`performance.now()`). */
export interface WorkerAnswer {
  readonly status: WorkerStatusV1;
  readonly receivedAt: number;
}

/** {@link askWorkers}, with the time each answer arrived: what a worker said holds from then on. */
export async function gatherWorkers(nc: NatsConnection, statusSubject: string): Promise<WorkerAnswer[]> {
  const answers: WorkerAnswer[] = [];
  try {
    const replies = await nc.requestMany(statusSubject, undefined, {
      strategy: "stall",
      stall: STALL_MS,
      maxWait: GATHER_MS,
    });
    for await (const reply of replies) {
      const receivedAt = performance.now();
      let body: unknown;
      try {
        body = reply.json();
      } catch {
        continue;
      }
      const status = WorkerStatusV1.safeParse(body);
      if (status.success) answers.push({ status: status.data, receivedAt });
    }
  } catch {
    // No responders (or the connection closing) means no worker could be asked.
  }
  return answers;
}
