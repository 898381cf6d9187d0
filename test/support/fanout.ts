import { createHostPolicyClient, type HostPolicyClient } from "@arbiter/host";
import { type RevocationV1, resourceNames, type StartComponentBodyV1 } from "@arbiter/protocol";
import { parseRulesDocument } from "@arbiter/rules";
import { openJetStreamRevocationLog, type RulesAdmin } from "@arbiter/store";
import { generateKey } from "@arbiter/trust";
import { jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import { until } from "../harness/index.js";

/** A rules document with only a default: every request denied, or every one permitted. */
export function defaultRules(effect: "allow" | "deny", extra: readonly object[] = []) {
  return parseRulesDocument(JSON.stringify({ version: 1, default: effect, rules: extra }));
}

/** The start request body of test component `name`. */
export function componentBody(name: string): StartComponentBodyV1 {
  return {
    componentId: name,
    imageRef: `ghcr.io/example/${name}:0.1.0`,
    maxInstances: 1,
    annotations: {},
    claims: null,
  };
}

/** A started reference host client with a new host key, on `nc`. */
export async function startHost(
  nc: NatsConnection,
  options: {
    readonly changesTopic?: string | null;
    readonly requestIds?: () => string;
    readonly policyTopic?: string;
  } = {},
  publicKey = generateKey("N").publicKey,
): Promise<HostPolicyClient> {
  const client = createHostPolicyClient({
    nc,
    timeoutMs: 10_000,
    host: { publicKey, lattice: "default", labels: {} },
    ...options,
  });
  await client.start();
  return client;
}

/**
 * Waits until the workers have re-evaluated `revision` and acknowledged it (the revoker's durable
 * consumer on the rules stream has it acknowledged): every override it causes is out by then.
 */
export async function untilRevisionReevaluated(nc: NatsConnection, revision: number, timeout = 30_000) {
  const names = resourceNames();
  const jsm = await jetstreamManager(nc);
  await until(
    async () =>
      (await jsm.consumers.info(names.rulesStream, names.revokerConsumer)).ack_floor.stream_seq >= revision,
    { name: `revision ${revision} re-evaluated`, timeout, interval: 50 },
  );
}

/**
 * Waits until the active index has projected every answered request's batch stored now (the
 * re-evaluations' batches, on their own subject, are never delivered to it).
 */
export async function untilIndexCaughtUp(nc: NatsConnection, timeout = 30_000) {
  const names = resourceNames();
  const jsm = await jetstreamManager(nc);
  const last =
    (await jsm.streams.getMessage(names.decisionsStream, { last_by_subj: names.decisionsSubject }))?.seq ?? 0;
  await until(
    async () =>
      (await jsm.consumers.info(names.decisionsStream, names.activeIndexConsumer)).ack_floor.stream_seq >=
      last,
    { name: `active index at decision message ${last}`, timeout, interval: 50 },
  );
}

/**
 * Waits until `count` pull requests wait on the split re-evaluation's parts consumer: that many
 * workers' parts feeds are open, so a revision taken now is split among them.
 */
export async function untilPartsPulled(nc: NatsConnection, count: number, timeout = 30_000) {
  const names = resourceNames();
  const jsm = await jetstreamManager(nc);
  await until(
    async () => (await jsm.consumers.info(names.scansStream, names.scanPartsConsumer)).num_waiting >= count,
    { name: `${count} workers pulling scan parts`, timeout, interval: 50 },
  );
}

/** Applies `document` and returns its revision. */
export async function applyRules(
  admin: RulesAdmin,
  document: ReturnType<typeof defaultRules>,
): Promise<number> {
  return (await admin.apply(document)).revision;
}

/**
 * The revocation records of `revision`, by request id. A scan done again records an override a
 * second time when it cut its chunks otherwise (a batch of other ids), so each id has one or two.
 */
export async function revocationsByRequest(
  nc: NatsConnection,
  revision: number,
): Promise<Map<string, RevocationV1[]>> {
  const byRequest = new Map<string, RevocationV1[]>();
  for await (const { record } of openJetStreamRevocationLog(nc).read()) {
    if (record.revision !== revision) continue;
    const list = byRequest.get(record.requestId);
    if (list === undefined) byRequest.set(record.requestId, [record]);
    else list.push(record);
  }
  return byRequest;
}

/**
 * Checks that every one of `requestIds` has its override recorded for `revision`, once or, for a
 * chunk redone otherwise, twice saying the same, and that nothing else is recorded for it.
 * Throws naming the first request id that is not so.
 */
export async function expectEachOverrideRecorded(
  nc: NatsConnection,
  revision: number,
  requestIds: readonly string[],
): Promise<void> {
  const byRequest = await revocationsByRequest(nc, revision);
  const wanted = new Set(requestIds);
  for (const id of byRequest.keys()) {
    if (!wanted.has(id))
      throw new Error(`request ${id} has a revocation of revision ${revision} and should not`);
  }
  for (const id of wanted) {
    const records = byRequest.get(id) ?? [];
    if (records.length === 0 || records.length > 2) {
      throw new Error(`request ${id} has ${records.length} revocation records of revision ${revision}`);
    }
    const [first, second] = records;
    if (
      second !== undefined &&
      JSON.stringify({ ...second, at: "" }) !== JSON.stringify({ ...first, at: "" })
    ) {
      throw new Error(`request ${id}'s two revocation records of revision ${revision} differ`);
    }
  }
}
