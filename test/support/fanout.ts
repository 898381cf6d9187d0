import { createHostPolicyClient, type HostPolicyClient } from "@arbiter/host";
import { resourceNames, type StartComponentBodyV1 } from "@arbiter/protocol";
import { parseRulesDocument } from "@arbiter/rules";
import type { RulesAdmin } from "@arbiter/store";
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
    readonly changesTopic?: string;
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

/** Waits until the active index has projected every decision message stored now. */
export async function untilIndexCaughtUp(nc: NatsConnection, timeout = 30_000) {
  const names = resourceNames();
  const jsm = await jetstreamManager(nc);
  const last = (await jsm.streams.info(names.decisionsStream)).state.last_seq;
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
