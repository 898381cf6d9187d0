import { resourceNames, ScanPartDoneV1, type ScanPartV1 } from "@arbiter/protocol";
import { type JetStreamManager, jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import { AckMux } from "./ack-mux.js";
import { DirectGetMux } from "./direct-get.js";
import { StoreUnavailableError } from "./errors.js";
import { errorText, parseJsonOrNull } from "./text.js";

/**
 * The split re-evaluation of rules revisions, in the stream `<PREFIX>_SCANS` (made by the admin's
 * store with the consumer the workers share): the worker that took a revision publishes its parts,
 * any worker does one and records it done, and the taker waits for every part to be done.
 */
export interface ScanParts {
  /**
   * Publishes `part` to be done, de-duplicated on (revision, scan, part): published again while
   * the first is in the stream's duplicate window, it is not queued twice. Throws StoreUnavailableError.
   */
  publish(part: ScanPartV1): Promise<void>;
  /** Records `done` (de-duplicated on its revision, scan and part). Throws StoreUnavailableError. */
  markDone(done: ScanPartDoneV1): Promise<void>;
  /**
   * The parts of `revision`'s re-evaluation `scan` recorded done, by part number (records naming
   * another scan are no part of it). Throws StoreUnavailableError.
   */
  done(revision: number, scan: string): Promise<Map<number, ScanPartDoneV1>>;
  /** Whether part `part` of `revision`'s `scan` is recorded done. Throws StoreUnavailableError. */
  isDone(revision: number, scan: string, part: number): Promise<boolean>;
  close(): void;
}

/** The subject of part `part` of `revision`, to be done. */
export function scanPartSubject(prefix: string, revision: number, part: number): string {
  return `${prefix}.scans.part.${revision}.${part}`;
}

/** The subject part `part` of `revision`'s re-evaluation `scan` is recorded done under. */
export function scanDoneSubject(prefix: string, revision: number, scan: string, part: number): string {
  return `${prefix}.scans.done.${revision}.${scan}.${part}`;
}

/**
 * The split re-evaluation's stream on a connection the caller owns (the stream and consumer are
 * made by `openJetStreamStore`; this opens nothing). Throws StoreUnavailableError when JetStream
 * cannot be reached.
 */
export async function openJetStreamScanParts(
  nc: NatsConnection,
  options: { readonly prefix?: string; readonly ackTimeoutMs?: number } = {},
): Promise<ScanParts> {
  const prefix = options.prefix ?? "arbiter";
  const names = resourceNames(prefix);
  const timeoutMs = options.ackTimeoutMs ?? 5000;
  let jsm: JetStreamManager;
  try {
    jsm = await jetstreamManager(nc, { timeout: timeoutMs });
  } catch (err) {
    throw new StoreUnavailableError(`JetStream is not available: ${errorText(err)}`, { cause: err });
  }
  const acks = new AckMux(nc, names.scansStream, timeoutMs);
  const reads = new DirectGetMux(nc, names.scansStream, timeoutMs);
  const stream = names.scansStream;
  const expected = { "Nats-Expected-Stream": stream };
  const append = async (subject: string, data: object, id: string) => {
    try {
      await acks.publish(subject, JSON.stringify(data), id, expected);
    } catch (err) {
      throw new StoreUnavailableError(`the ${stream} stream did not acknowledge: ${errorText(err)}`, {
        cause: err,
      });
    }
  };
  const doneSubjects = async (revision: number, scan: string): Promise<string[]> => {
    try {
      const info = await jsm.streams.info(stream, {
        subjects_filter: `${prefix}.scans.done.${revision}.${scan}.*`,
      });
      return Object.keys(info.state.subjects ?? {});
    } catch (err) {
      throw new StoreUnavailableError(`cannot list ${stream}: ${errorText(err)}`, { cause: err });
    }
  };
  const readDone = async (subject: string): Promise<ScanPartDoneV1 | null> => {
    const message = await reads.last(subject);
    if (message === null) return null;
    const parsed = ScanPartDoneV1.safeParse(
      parseJsonOrNull(
        Buffer.from(message.data.buffer, message.data.byteOffset, message.data.byteLength).toString(),
      ),
    );
    return parsed.success &&
      subject === scanDoneSubject(prefix, parsed.data.revision, parsed.data.scan, parsed.data.part)
      ? parsed.data
      : null;
  };
  return {
    publish: (part) =>
      append(
        scanPartSubject(prefix, part.revision, part.part),
        part,
        `part:${part.revision}:${part.scan}:${part.part}`,
      ),
    markDone: (done) =>
      append(
        scanDoneSubject(prefix, done.revision, done.scan, done.part),
        done,
        `done:${done.revision}:${done.scan}:${done.part}`,
      ),
    done: async (revision, scan) => {
      const found = await Promise.all((await doneSubjects(revision, scan)).map(readDone));
      const out = new Map<number, ScanPartDoneV1>();
      for (const done of found) if (done !== null) out.set(done.part, done);
      return out;
    },
    isDone: async (revision, scan, part) =>
      (await readDone(scanDoneSubject(prefix, revision, scan, part))) !== null,
    close: () => {
      acks.close();
      reads.close();
    },
  };
}
