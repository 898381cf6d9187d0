import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  createOperatorSetup,
  latticeBuckets,
  type NatsRole,
  PASSWORD_USERS,
  renderCredsFile,
  renderOperatorConfig,
  WORKER_REPLY_PREFIXES,
} from "@arbiter/embedded-nats";
import { createHostPolicyClient, type HostPolicyClient } from "@arbiter/host";
import {
  type PerformInvocationBodyV1,
  resourceNames,
  type StartComponentBodyV1,
  type StartProviderBodyV1,
} from "@arbiter/protocol";
import { BATCH_CAUSE_HEADER, BATCH_SIGNATURE_HEADER, REEVALUATION_BATCH_CAUSE } from "@arbiter/store";
import { createSigner, generateKey } from "@arbiter/trust";
import { createWorker, type Worker } from "@arbiter/worker";
import { AckPolicy, DeliverPolicy, jetstream, jetstreamManager, type StreamConfig } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { credsAuthenticator, headers, type Msg, type NatsConnection } from "@nats-io/nats-core";
import type { NodeConnectionOptions } from "@nats-io/transport-node";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectTo, until } from "../harness/index.js";
import { configuredWorkerKey } from "./arbiter.js";
import { runArbiter } from "./cli.js";
import { fixtureJson } from "./fixtures.js";

/** Passwords the password form of the shipped configuration reads from the server's environment. */
export const TEST_PASSWORDS: Readonly<Record<string, string>> = {
  ARBITER_WORKER_PASSWORD: "worker-secret",
  ARBITER_ADMIN_PASSWORD: "admin-secret",
  WASMCLOUD_HOST_PASSWORD: "host-secret",
};

/** Inbox prefix of each role's connections in the tests, as `arbiter` and wasmCloud use them. */
const INBOX_PREFIX: Record<NatsRole, string | undefined> = {
  worker: "_INBOX_arbiter_worker",
  admin: "_INBOX_arbiter_admin",
  host: undefined,
};

/** A running NATS deployment with the shipped permissions, and how each role signs in to it. */
export interface SecuredNats {
  /** The URL every test client connects to (one node, so that message order holds across clients). */
  readonly url: string;
  /** Replicas of Arbiter's streams (3 on a cluster); default 1. */
  readonly replicas?: number;
  /** The admin seed the deployment's rules are signed with already (`arbiter up`'s); default a fresh one. */
  readonly adminSeed?: string;
  /** Credentials of a role, as nats.js takes them. */
  auth(role: NatsRole): Omit<NodeConnectionOptions, "servers">;
  /** Environment for the `arbiter` command as that role. */
  cliEnv(role: NatsRole): Record<string, string>;
  stop(): Promise<void>;
}

/** The password users of `deploy/nats/accounts.conf` on a server at `url`. */
export function passwordUsers(url: string, stop: () => Promise<void>): SecuredNats {
  return {
    url,
    auth: (role) => ({
      user: PASSWORD_USERS[role].user,
      pass: TEST_PASSWORDS[PASSWORD_USERS[role].passwordVariable],
    }),
    cliEnv: (role) => ({
      NATS_USER: PASSWORD_USERS[role].user,
      NATS_PASSWORD: TEST_PASSWORDS[PASSWORD_USERS[role].passwordVariable] ?? "",
    }),
    stop,
  };
}

/**
 * A fresh operator-mode setup (the JWT form of the same permissions): its server configuration, and
 * a function that turns a started server into a {@link SecuredNats} with one `.creds` file per role.
 */
export function operatorUsers(): {
  config: string;
  secured(url: string, stop: () => Promise<void>): SecuredNats;
} {
  const setup = createOperatorSetup({ lattice: "default" });
  return {
    config: renderOperatorConfig(setup),
    secured(url, stop) {
      const dir = mkdtempSync(join(tmpdir(), "arbiter-creds-"));
      const files = {} as Record<NatsRole, string>;
      for (const role of ["host", "worker", "admin"] as const) {
        files[role] = join(dir, `${role}.creds`);
        writeFileSync(files[role], renderCredsFile(setup.users[role]), { mode: 0o600 });
      }
      return {
        url,
        auth: (role) => ({
          authenticator: credsAuthenticator(new TextEncoder().encode(renderCredsFile(setup.users[role]))),
        }),
        cliEnv: (role) => ({ NATS_CREDS: files[role] }),
        stop: async () => {
          await stop();
          rmSync(dir, { recursive: true, force: true });
        },
      };
    },
  };
}

const EXAMPLE_RULES = new URL("../../deploy/rules/example.yaml", import.meta.url).pathname;
const provider = fixtureJson("start-provider")["request"] as StartProviderBodyV1;
const component = fixtureJson("start-component")["request"] as StartComponentBodyV1;
const invocation = fixtureJson("perform-invocation")["request"] as PerformInvocationBodyV1;
const hostIdentity = fixtureJson("start-component")["host"] as HostIdentity;
type HostIdentity = { publicKey: string; lattice: string; labels: Record<string, string> };

/** Resolves once `nc`'s server has processed everything `nc` sent before (PING/PONG). */
async function processed(...connections: NatsConnection[]): Promise<void> {
  for (const nc of connections) await nc.flush();
}

/** Collects what arrives on `subject` for `nc` (closed with the connection). */
function collect(nc: NatsConnection, subject: string): Msg[] {
  const seen: Msg[] = [];
  nc.subscribe(subject, {
    callback: (_err, msg) => {
      seen.push(msg);
    },
  });
  return seen;
}

/** True when the subscription was closed by the server for a permissions violation. */
/** An override's text, as a worker publishes it, for `requestId`. */
function overrideText(requestId: string, permitted: boolean): string {
  return JSON.stringify({ requestId, request_id: requestId, permitted, message: "x" });
}

async function subscribeRefused(nc: NatsConnection, subject: string): Promise<boolean> {
  const sub = nc.subscribe(subject);
  // The server answers a refused SUB with an error before it answers the PING of the flush.
  await nc.flush();
  if (!sub.isClosed()) {
    sub.unsubscribe();
    return false;
  }
  return /permissions violation/i.test(String(await sub.closed));
}

/**
 * The attacks of README "Threat model" by someone holding a wasmCloud host's (or a worker's) NATS
 * credentials, each asserting that it has no effect, and what a host and a worker need still
 * working, against the deployment `start` brings up. One deployment is shared by the whole suite.
 */
export function describePermissionAttacks(name: string, start: () => Promise<SecuredNats>): void {
  describe(`the shipped NATS permissions: ${name}`, () => {
    let nats: SecuredNats;
    const connections: NatsConnection[] = [];
    let worker: Worker;
    let workerNc: NatsConnection;
    let adminNc: NatsConnection;
    let attackerNc: NatsConnection;
    let victimNc: NatsConnection;
    let victim: HostPolicyClient;
    let heardByVictim: Msg[];
    let admin = generateKey("O");

    const connectAs = async (role: NatsRole): Promise<NatsConnection> => {
      const prefix = INBOX_PREFIX[role];
      const nc = await connectTo(nats.url, {
        ...nats.auth(role),
        ...(prefix ? { inboxPrefix: prefix } : {}),
      });
      connections.push(nc);
      return nc;
    };
    // A victim's request sent again by the attacker with `reply` as its reply subject, until this
    // suite's worker has decided one (`arbiter up` runs workers of its own).
    const steerUntilDecided = async (reply: string, name: string): Promise<void> => {
      const [sent] = victim.sentRequestIds();
      const before = worker.stats().decisions;
      const request = JSON.stringify({ ...fixtureJson("start-provider"), requestId: sent });
      await until(
        () => {
          if (worker.stats().decisions > before) return true;
          attackerNc.publish("wasmcloud.policy", request, { reply });
          return false;
        },
        { name, interval: 100 },
      );
    };
    const rulesRevision = async () =>
      (await (await jetstreamManager(adminNc)).streams.info("ARBITER_RULES")).state.last_seq;
    const snapshotRevision = async () =>
      (await (await new Kvm(adminNc).open("arbiter-rules")).get("snapshot"))?.revision ?? 0;
    const arbiterStreams = async () => {
      const jsm = await jetstreamManager(adminNc);
      return Promise.all(
        ["ARBITER_RULES", "ARBITER_DECISIONS", "ARBITER_REVOCATIONS"].map(
          async (s) => (await jsm.streams.info(s)).state,
        ),
      );
    };
    const hostJsm = () => jetstreamManager(attackerNc, { timeout: 2000 });

    beforeAll(async () => {
      nats = await start();
      if (nats.adminSeed)
        admin = { ...admin, seed: nats.adminSeed, publicKey: createSigner(nats.adminSeed).publicKey };
      const replicas = nats.replicas ?? 1;
      const applied = await runArbiter(
        ["rules", "apply", EXAMPLE_RULES, "--json", "--replicas", String(replicas)],
        {
          NATS_URL: nats.url,
          ...nats.cliEnv("admin"),
          ARBITER_ADMIN_SEED: admin.seed,
        },
      );
      expect(applied.code, applied.stderr).toBe(0);
      adminNc = await connectAs("admin");
      workerNc = await connectAs("worker");
      worker = createWorker({
        nc: workerNc,
        logger: pino({ level: "silent" }),
        config: {
          adminKeys: [admin.publicKey],
          inboxPrefixes: [...WORKER_REPLY_PREFIXES],
          replicas,
          ...configuredWorkerKey(),
        },
      });
      await worker.start();
      attackerNc = await connectAs("host");
      victimNc = await connectAs("host");
      // A host opens its lattice buckets, creating them when they are not there (wasmCloud 1.x).
      for (const bucket of latticeBuckets("default")) await new Kvm(victimNc).create(bucket);
      heardByVictim = collect(victimNc, "wasmcloud.policy.changes");
      victim = createHostPolicyClient({ nc: victimNc, host: hostIdentity, changesTopic: null });
      await victim.start();
    });

    afterAll(async () => {
      await victim?.stop();
      await worker?.stop();
      await Promise.allSettled(connections.map((nc) => nc.close()));
      await nats?.stop();
    });

    it("lets a worker answer a host through the policy service, recording the decision", async () => {
      const answer = await victim.evaluateStartProvider(provider);
      expect(answer).toMatchObject({ permitted: true, cached: false });
      expect(answer.failure).toBeUndefined();
      expect(worker.stats()).toMatchObject({ logFailures: 0, refusedReply: 0 });
      expect((await arbiterStreams())[1]?.messages).toBeGreaterThanOrEqual(1);
    });

    it("lets a host's credentials neither queue a part of a split re-evaluation nor take one", async () => {
      // A forged part would have workers re-evaluate (and override) entries of the attacker's
      // choosing; a part taken by the attacker would never be done by a worker.
      const jsm = await jetstreamManager(adminNc);
      const before = (await jsm.streams.info("ARBITER_SCANS")).state.last_seq;
      const part = { revision: 1, part: 0, parts: 1, keys: [] };
      await expect(
        jetstream(attackerNc, { timeout: 1000 }).publish("arbiter.scans.part.1.0", JSON.stringify(part)),
      ).rejects.toThrow();
      await expect(
        attackerNc.request(
          "$JS.API.CONSUMER.MSG.NEXT.ARBITER_SCANS.arbiter-scan-parts",
          JSON.stringify({ batch: 1, expires: 500_000_000 }),
          { timeout: 1000 },
        ),
      ).rejects.toThrow();
      expect((await jsm.streams.info("ARBITER_SCANS")).state.last_seq).toBe(before);
    });

    it("lets a host use its own lattice bucket: put, get and watch", async () => {
      const kv = await new Kvm(attackerNc).open("LATTICEDATA_default");
      const seen: string[] = [];
      const watch = await kv.watch({ key: "host.*" });
      void (async () => {
        for await (const entry of watch) seen.push(entry.key);
      })();
      await kv.put("host.NABC", "{}");
      expect((await kv.get("host.NABC"))?.string()).toBe("{}");
      await until(() => seen.includes("host.NABC"), { name: "the watch sees the put", timeout: 10_000 });
      watch.stop();
    });

    it("creates no stream that republishes onto the changes topic, Arbiter's subjects or its snapshot", async () => {
      const rules = await rulesRevision();
      const snapshot = await snapshotRevision();
      const jsm = await hostJsm();
      for (const dest of [
        "wasmcloud.policy.changes",
        "arbiter.rules.events",
        "arbiter.decisions.recorded",
        "$KV.arbiter-rules.snapshot",
      ]) {
        // A subject a host may publish on, republished where it may not.
        const republish = { src: "wasmbus.evt.default.evil", dest };
        await expect(
          jsm.streams.add({ name: "EVIL_REPUBLISH", subjects: ["wasmbus.evt.default.evil"], republish }),
        ).rejects.toThrow();
        // Under the name of its own bucket: it exists already, so nothing is created or changed.
        const asBucket: Partial<StreamConfig> & { name: string } = {
          name: "KV_LATTICEDATA_default",
          subjects: ["$KV.LATTICEDATA_default.>"],
          republish: { src: "$KV.LATTICEDATA_default.evil", dest },
        };
        await expect(jsm.streams.add(asBucket)).rejects.toThrow();
        await expect(
          jsm.streams.update("KV_LATTICEDATA_default", { republish: asBucket.republish }),
        ).rejects.toThrow();
        attackerNc.publish(
          "wasmbus.evt.default.evil",
          '{"requestId":"x","request_id":"x","permitted":true,"message":"x"}',
        );
      }
      await (await new Kvm(attackerNc).open("LATTICEDATA_default")).put(
        "evil",
        '{"requestId":"x","permitted":true}',
      );
      await processed(attackerNc, victimNc);
      expect(heardByVictim).toEqual([]);
      expect(await rulesRevision()).toBe(rules);
      expect(await snapshotRevision()).toBe(snapshot);
    });

    it("creates no stream on the policy topic: the workers still answer first", async () => {
      const jsm = await hostJsm();
      await expect(
        jsm.streams.add({ name: "EVIL_POLICY", subjects: ["wasmcloud.policy"] }),
      ).rejects.toThrow();
      await expect(
        jsm.streams.add({
          name: "KV_CONFIGDATA_default",
          subjects: ["wasmcloud.policy", "$KV.CONFIGDATA_default.>"],
        }),
      ).rejects.toThrow();
      const answer = await victim.evaluatePerformInvocation(invocation);
      expect(answer).toMatchObject({ permitted: true, cached: false });
      expect(answer.failure).toBeUndefined();
    });

    it("mirrors or sources none of Arbiter's records", async () => {
      const jsm = await hostJsm();
      for (const stream of ["ARBITER_DECISIONS", "KV_arbiter-rules", "ARBITER_RULES"]) {
        await expect(jsm.streams.add({ name: "EVIL_MIRROR", mirror: { name: stream } })).rejects.toThrow();
        await expect(jsm.streams.add({ name: "EVIL_SOURCE", sources: [{ name: stream }] })).rejects.toThrow();
        await expect(
          jsm.streams.add({
            name: "KV_LATTICEDATA_default",
            mirror: { name: stream, external: { api: "$JS.API" } },
          }),
        ).rejects.toThrow();
      }
    });

    it("creates no consumer on Arbiter's streams, not even by the six-token durable form", async () => {
      const push = JSON.stringify({
        stream_name: "ARBITER_DECISIONS",
        config: {
          durable_name: "spy",
          deliver_subject: "_INBOX.spy",
          ack_policy: AckPolicy.None,
          deliver_policy: DeliverPolicy.All,
        },
      });
      for (const subject of [
        "$JS.API.CONSUMER.DURABLE.CREATE.ARBITER_DECISIONS.spy",
        "$JS.API.CONSUMER.CREATE.ARBITER_DECISIONS.spy",
        "$JS.API.CONSUMER.CREATE.ARBITER_DECISIONS",
        "$JS.API.CONSUMER.CREATE.KV_arbiter-rules.spy.>",
        "$JS.API.DIRECT.GET.KV_arbiter-rules.$KV.arbiter-rules.snapshot",
        "$JS.API.STREAM.MSG.GET.ARBITER_DECISIONS",
        "$JS.API.CONSUMER.DURABLE.CREATE.KV_LATTICEDATA_default.spy",
      ]) {
        await expect(attackerNc.request(subject, push, { timeout: 1000 }), subject).rejects.toThrow();
      }
      const consumers = await (await jetstreamManager(adminNc)).consumers.list("ARBITER_DECISIONS").next();
      expect(consumers.map((c) => c.name)).not.toContain("spy");
    });

    it("reaches no other JetStream, account or system API, and no deletion of its own buckets, by any form", async () => {
      const rules = await rulesRevision();
      const bucket = "KV_LATTICEDATA_default";
      const before = (await (await jetstreamManager(victimNc)).streams.info(bucket)).state.messages;
      for (const subject of [
        "$JS.API.ACCOUNT.INFO",
        "$JS.API.ACCOUNT.PURGE.LATTICE_JS",
        "$JS.API.STREAM.TEMPLATE.CREATE.EVIL",
        "$JS.API.STREAM.TEMPLATE.NAMES",
        "$JS.API.META.LEADER.STEPDOWN",
        `$JS.API.STREAM.DELETE.${bucket}`,
        `$JS.API.STREAM.PURGE.${bucket}`,
        `$JS.API.STREAM.UPDATE.${bucket}`,
        `$JS.API.STREAM.MSG.DELETE.${bucket}`,
        `$JS.API.STREAM.SNAPSHOT.${bucket}`,
        `$JS.API.STREAM.RESTORE.${bucket}`,
        "$JS.API.STREAM.MSG.DELETE.ARBITER_RULES",
        "$SYS.REQ.SERVER.PING",
        "$SYS.REQ.ACCOUNT.LATTICE.CONNZ",
        "$SYS.REQ.USER.INFO",
      ]) {
        await expect(attackerNc.request(subject, "{}", { timeout: 1000 }), subject).rejects.toThrow();
      }
      for (const subject of ["$SYS.>", "$JS.EVENT.>", "$JS.API.>"]) {
        expect(await subscribeRefused(await connectAs("host"), subject), subject).toBe(true);
      }
      // A push consumer on its own bucket delivering onto the JetStream API: not taken as a request
      // (nats-server 2.15 refuses such a deliver subject outright; earlier releases create it).
      const jsm = await hostJsm();
      await jsm.consumers
        .add(bucket, {
          deliver_subject: `$JS.API.STREAM.PURGE.${bucket}`,
          ack_policy: AckPolicy.None,
          deliver_policy: DeliverPolicy.New,
          filter_subject: "$KV.LATTICEDATA_default.purge-me",
        })
        .catch((err: unknown) => {
          expect(String(err)).toMatch(/invalid push consumer deliver subject/);
        });
      const kv = await new Kvm(attackerNc).open("LATTICEDATA_default");
      await kv.put("purge-me", "{}");
      await kv.put("purge-me", "{}");
      await processed(attackerNc, victimNc);
      expect((await (await jetstreamManager(victimNc)).streams.info(bucket)).state.messages).toBeGreaterThan(
        before,
      );
      expect(await rulesRevision()).toBe(rules);
    });

    it("lists no stream and reads no stream's information", async () => {
      for (const subject of [
        "$JS.API.STREAM.LIST",
        "$JS.API.STREAM.NAMES",
        "$JS.API.STREAM.INFO.ARBITER_DECISIONS",
      ]) {
        await expect(attackerNc.request(subject, "{}", { timeout: 1000 }), subject).rejects.toThrow();
      }
    });

    it("reads no JetStream acknowledgement, worker status or admin reply on any inbox a host can read", async () => {
      const sniffed = collect(attackerNc, "_INBOX.>");
      await processed(attackerNc);
      await victim.evaluateStartComponent({ ...component, componentId: "sniffed-component" });
      const statuses = await adminNc.requestMany("arbiter.workers.status", undefined, {
        strategy: "count",
        maxMessages: 1,
        maxWait: 5000,
      });
      const answers: string[] = [];
      for await (const answer of statuses) answers.push(answer.string());
      expect(answers.join()).toContain("adminKeys");
      await processed(workerNc, adminNc, attackerNc);
      const texts = sniffed.map((m) => m.string());
      expect(texts.filter((t) => /ARBITER|"stream"|adminKeys|revision/.test(t))).toEqual([]);
      for (const subject of ["_INBOX_arbiter_worker.>", "_INBOX_arbiter_admin.>", ">", "_R_.>"]) {
        expect(await subscribeRefused(await connectAs("host"), subject), subject).toBe(true);
      }
    });

    it("forges no answer, acknowledgement or override into anyone's inbox or the changes topic", async () => {
      const probe = collect(victimNc, "_INBOX.victimprobe.1");
      const decisions = (await arbiterStreams())[1]?.messages;
      await processed(victimNc);
      for (const subject of [
        "_INBOX.victimprobe.1",
        "_INBOX_arbiter_worker.ack.1",
        "$JS.ACK.ARBITER_DECISIONS.worker.1.1.1.1.1",
        "wasmcloud.policy.changes",
        "arbiter.decisions.recorded",
      ]) {
        attackerNc.publish(subject, JSON.stringify({ requestId: "forged", permitted: true, message: null }));
      }
      await processed(attackerNc, victimNc);
      expect(probe).toEqual([]);
      expect(heardByVictim).toEqual([]);
      expect((await arbiterStreams())[1]?.messages).toBe(decisions);
    });

    it("lets no host's or admin's credentials store a batch on the re-evaluations' subject, which the index never reads; a worker's may", async () => {
      // A batch there is never delivered to the active index's projection; a host that could store
      // one would fill the decision log that audits read, and one marked a re-evaluation hides nothing.
      const names = resourceNames();
      await victim.evaluateStartComponent({ ...component, componentId: "reevaluated-subject" });
      const jsm = await jetstreamManager(adminNc);
      const genuine = await jsm.streams.getMessage(names.decisionsStream, {
        last_by_subj: names.decisionsSubject,
      });
      expect(genuine).not.toBeNull();
      const copy = () => {
        const h = headers();
        h.set(BATCH_SIGNATURE_HEADER, genuine!.header.get(BATCH_SIGNATURE_HEADER));
        h.set(BATCH_CAUSE_HEADER, REEVALUATION_BATCH_CAUSE);
        return h;
      };
      const stored = async () => (await jsm.streams.info(names.decisionsStream)).state.last_seq;
      const before = await stored();
      for (const nc of [attackerNc, adminNc]) {
        await expect(
          jetstream(nc, { timeout: 1000 }).publish(names.reevaluationsSubject, genuine!.data, {
            headers: copy(),
            msgID: "01FORGEDREEVALUATEDFORGEDX",
          }),
        ).rejects.toThrow();
        nc.publish(names.reevaluationsSubject, genuine!.data, { headers: copy() });
      }
      await processed(attackerNc, adminNc);
      expect(await stored()).toBe(before);
      // The worker's credentials may: under the genuine batch's id, JetStream takes it for that
      // batch again (a duplicate, nothing stored).
      const ack = await jetstream(workerNc).publish(names.reevaluationsSubject, genuine!.data, {
        headers: copy(),
        msgID: genuine!.header.get("Nats-Msg-Id"),
      });
      expect(ack).toMatchObject({ duplicate: true, seq: genuine!.seq });
      expect(await stored()).toBe(before);
    });

    it("answers a worker's host ping once per host, only to that worker", async () => {
      const pings: Msg[] = [];
      attackerNc.subscribe("wasmbus.ctl.v1.default.host.ping", {
        callback: (_err, msg) => {
          pings.push(msg);
          // A flood of answers: a host may answer a message it received once (allow_responses).
          for (let i = 0; i < 3; i++) {
            msg.respond(JSON.stringify({ success: true, message: "", response: { id: `NATTACKER${i}` } }));
          }
        },
      });
      victimNc.subscribe("wasmbus.ctl.v1.default.host.ping", {
        callback: (_err, msg) => {
          msg.respond(JSON.stringify({ success: true, message: "", response: { id: "NVICTIM" } }));
        },
      });
      const sniffed = collect(victimNc, "_INBOX.>");
      await processed(attackerNc, victimNc);
      // Every host answers a ping: the export's responses are a stream, so both answers arrive.
      const replies = await workerNc.requestMany("wasmbus.ctl.v1.default.host.ping", "", {
        strategy: "count",
        maxMessages: 2,
        maxWait: 5000,
      });
      const answered: string[] = [];
      for await (const reply of replies) answered.push(JSON.parse(reply.string()).response.id);
      expect(answered.sort()).toEqual(["NATTACKER0", "NVICTIM"]);
      expect(pings[0]?.reply).toMatch(/^_R_\./);
      await processed(workerNc, attackerNc, victimNc);
      expect(sniffed.filter((m) => m.string().includes('"success"'))).toEqual([]);
      // Workers hear the lattice's lifecycle events, nothing else of it.
      expect(await subscribeRefused(workerNc, "wasmbus.evt.default.component_scaled")).toBe(true);
      expect(await subscribeRefused(workerNc, "wasmbus.ctl.v1.default.>")).toBe(true);
    });

    it("arms no expiry timer and takes none: the timers are Arbiter's", async () => {
      const due = Math.floor(Date.now() / 1000) - 10;
      const subject = `arbiter.expiries.${due}`;
      attackerNc.publish(subject, JSON.stringify({ expiresAt: due }));
      await processed(attackerNc);
      await expect(
        jetstream(attackerNc, { timeout: 1000 }).publish(subject, JSON.stringify({ expiresAt: due })),
      ).rejects.toThrow();
      for (const api of [
        "$JS.API.CONSUMER.INFO.ARBITER_EXPIRIES.arbiter-expiries",
        "$JS.API.CONSUMER.MSG.NEXT.ARBITER_EXPIRIES.arbiter-expiries",
        "$JS.API.CONSUMER.DURABLE.CREATE.ARBITER_EXPIRIES.spy",
      ]) {
        await expect(attackerNc.request(api, "{}", { timeout: 1000 }), api).rejects.toThrow(/permission/i);
      }
      const stored = await (await jetstreamManager(adminNc)).streams.info("ARBITER_EXPIRIES", {
        subjects_filter: subject,
      });
      expect(stored.state.subjects?.[subject] ?? 0).toBe(0);
    });

    it("hears no answer steered onto the changes topic by a host's reply subject", async () => {
      await steerUntilDecided("wasmcloud.policy.changes", "this suite's worker decides a steered request");
      // The answer leaves the worker's connection before this genuine override does: order holds.
      const sentinel = overrideText("sentinel", false);
      workerNc.publish("wasmcloud.policy.changes", sentinel);
      await until(() => heardByVictim.length > 0, { name: "the sentinel override arrives" });
      expect(heardByVictim.map((m) => m.string())).toEqual([sentinel]);
      heardByVictim.length = 0;
    });

    it("lets a host hear overrides on its own changes subject, and lets no host or admin forge one there", async () => {
      // A host started with `--policy-changes-topic wasmcloud.policy.changes.<its key>` hears only
      // that subject; whoever else could publish there would grant or revoke at will.
      const own = `wasmcloud.policy.changes.${hostIdentity.publicKey}`;
      expect(await subscribeRefused(await connectAs("host"), own)).toBe(false);
      const heard = collect(victimNc, own);
      await processed(victimNc);
      const forged = overrideText("forged", true);
      for (const nc of [attackerNc, adminNc]) nc.publish(own, forged);
      await processed(attackerNc, adminNc, victimNc);
      const sentinel = overrideText("own", false);
      workerNc.publish(own, sentinel);
      await until(() => heard.length > 0, {
        name: "the worker's override on the host's own subject arrives",
      });
      await processed(workerNc, victimNc);
      expect(heard.map((m) => m.string())).toEqual([sentinel]);
      expect(heardByVictim).toEqual([]);
    });

    it("hears no answer steered onto a host's own changes subject by a host's reply subject", async () => {
      const own = `wasmcloud.policy.changes.${hostIdentity.publicKey}`;
      const heard = collect(victimNc, own);
      await processed(victimNc);
      await steerUntilDecided(own, "this suite's worker decides a request steered onto a host's subject");
      const sentinel = overrideText("steer", false);
      workerNc.publish(own, sentinel);
      await until(() => heard.length > 0, { name: "the sentinel override arrives" });
      expect(heard.map((m) => m.string())).toEqual([sentinel]);
    });

    it("delivers nothing into Arbiter's streams or snapshot through a push consumer on a host's bucket", async () => {
      // nats-server does not check a push consumer's deliver subject against its creator's
      // permissions: in one account this wrote into the rules stream. The buckets are in another.
      const rules = await rulesRevision();
      const snapshot = await snapshotRevision();
      const jsm = await hostJsm();
      for (const deliver of [
        "arbiter.rules.events",
        "$KV.arbiter-rules.snapshot",
        "arbiter.decisions.recorded",
      ]) {
        await jsm.consumers.add("KV_LATTICEDATA_default", {
          deliver_subject: deliver,
          ack_policy: AckPolicy.None,
          deliver_policy: DeliverPolicy.LastPerSubject,
          filter_subject: "$KV.LATTICEDATA_default.evil",
        });
      }
      await (await new Kvm(attackerNc).open("LATTICEDATA_default")).put(
        "evil",
        '{"type":"ruleset.replaced"}',
      );
      await processed(attackerNc, adminNc);
      expect(await rulesRevision()).toBe(rules);
      expect(await snapshotRevision()).toBe(snapshot);
    });

    it("delivers no override onto the changes topic from a push consumer on a host's bucket, only into inboxes", async () => {
      const jsm = await hostJsm();
      const inbox = collect(victimNc, "_INBOX.victimprobe.delivered");
      await processed(victimNc);
      for (const deliver of ["wasmcloud.policy.changes", "_INBOX.victimprobe.delivered"]) {
        await jsm.consumers.add("KV_LATTICEDATA_default", {
          deliver_subject: deliver,
          ack_policy: AckPolicy.None,
          deliver_policy: DeliverPolicy.New,
          filter_subject: "$KV.LATTICEDATA_default.forged",
        });
      }
      const kv = await new Kvm(attackerNc).open("LATTICEDATA_default");
      const forged = overrideText("forged", true);
      await kv.put("forged", forged);
      // Still possible (README, Threat model): the delivery into a host's inbox arrives. A second
      // one after it means the first put was delivered by every consumer.
      await until(() => inbox.length >= 1, { name: "the first delivery into the inbox" });
      await kv.put("forged", forged);
      await until(() => inbox.length >= 2, { name: "the second delivery into the inbox" });
      await processed(victimNc);
      expect(heardByVictim).toEqual([]);
    });

    it("fills none of Arbiter's storage from a host's bucket", async () => {
      const jsm = await jetstreamManager(adminNc);
      const before = (await jsm.getAccountInfo()).storage;
      const kv = await new Kvm(attackerNc).open("CONFIGDATA_default");
      await kv.put("filler", new Uint8Array(256 * 1024));
      expect((await jsm.getAccountInfo()).storage).toBe(before);
    });

    it("lets a worker's credentials deliver no copied rule event into the rules stream or snapshot through a push consumer", async () => {
      // nats-server does not check a push consumer's deliver subject: a consumer on a stream the
      // worker writes (its decisions) delivered whatever it put there, here a genuine signed rule
      // event read back, into ARBITER_RULES, where a replayed event stops every worker's history.
      const rules = await rulesRevision();
      const snapshot = await snapshotRevision();
      const jsm = await jetstreamManager(workerNc, { timeout: 1000 });
      const genuine = await jsm.streams.getMessage("ARBITER_RULES", { seq: 1 });
      expect(genuine?.string()).toContain('"deployment.created"');
      for (const stream of [
        "ARBITER_DECISIONS",
        "ARBITER_REVOCATIONS",
        "KV_arbiter-rules",
        "ARBITER_RULES",
      ]) {
        for (const deliver of ["arbiter.rules.events", "$KV.arbiter-rules.snapshot"]) {
          // A consumer on the rules stream may deliver only its own signed events, and never onto itself.
          if (stream === "ARBITER_RULES" && deliver !== "arbiter.rules.events") continue;
          await expect(
            jsm.consumers.add(stream, {
              deliver_subject: deliver,
              ack_policy: AckPolicy.None,
              deliver_policy: DeliverPolicy.New,
            }),
            `${stream} onto ${deliver}`,
          ).rejects.toThrow();
          await expect(
            workerNc.request(
              `$JS.API.CONSUMER.DURABLE.CREATE.${stream}.relay`,
              JSON.stringify({
                stream_name: stream,
                config: { durable_name: "relay", deliver_subject: deliver, ack_policy: AckPolicy.None },
              }),
              { timeout: 1000 },
            ),
            `${stream} onto ${deliver}, durable`,
          ).rejects.toThrow();
        }
      }
      const js = jetstream(workerNc, { timeout: 2000 });
      await js.publish("arbiter.decisions.recorded", genuine!.data);
      await js.publish("arbiter.revocations.recorded", genuine!.data).catch(() => undefined);
      await processed(workerNc, adminNc);
      expect(await rulesRevision()).toBe(rules);
      expect(await snapshotRevision()).toBe(snapshot);
      expect(worker.health.state).toBe("ready");
    });

    it("lets a worker's credentials create no bucket of Arbiter's that is not there yet with a republish or a source", async () => {
      // The replay bucket is made by the first worker that checks signatures: whoever creates a
      // stream first chooses its configuration, and a republish of its puts onto the rules subject
      // would append whatever the worker's credential puts there to ARBITER_RULES.
      const rules = await rulesRevision();
      const jsm = await jetstreamManager(workerNc, { timeout: 1000 });
      for (const bucket of ["arbiter-replay", "arbiter-active"]) {
        const name = `KV_${bucket}`;
        const subjects = [`$KV.${bucket}.>`];
        for (const config of [
          { name, subjects, republish: { src: `$KV.${bucket}.>`, dest: "arbiter.rules.events" } },
          { name, subjects, sources: [{ name: "ARBITER_DECISIONS" }] },
          { name, subjects: [...subjects, "arbiter.rules.events.>"] },
        ]) {
          await expect(jsm.streams.add(config), `${name}: ${JSON.stringify(config)}`).rejects.toThrow();
        }
      }
      expect(await rulesRevision()).toBe(rules);
    });

    it("forges no write into the workers' mirrors of the active index: only the server republishes there", async () => {
      // A forged write on the republished subjects would put an entry of the attacker's choosing
      // (any host's request id, any outcome) into every worker's mirror, to be overridden next.
      const listener = await connectAs("worker");
      const heard = collect(listener, "arbiter.active.>");
      await listener.flush();
      const forged = headers();
      forged.set("Nats-Stream", "KV_arbiter-active");
      forged.set("Nats-Sequence", "999999999");
      for (const nc of [attackerNc, workerNc, adminNc]) {
        nc.publish("arbiter.active.e.forged.entry", "{}", { headers: forged });
      }
      await processed(attackerNc, workerNc, adminNc);
      // A genuine write of the bucket, after the forged ones (the key of no revision's scan report).
      await jetstream(workerNc, { timeout: 2000 }).publish("$KV.arbiter-active.s.0", "{}");
      await until(() => heard.some((m) => m.subject === "arbiter.active.s.0"), {
        name: "the bucket's write republished",
        timeout: 10_000,
        interval: 20,
      });
      expect(heard.filter((m) => m.subject.includes("forged"))).toEqual([]);
      expect(await subscribeRefused(await connectAs("host"), "arbiter.active.>")).toBe(true);
      expect(await subscribeRefused(await connectAs("admin"), "arbiter.active.>")).toBe(true);
    });

    it("lets a worker's credentials write no rule event or snapshot, and create no republishing stream", async () => {
      const rules = await rulesRevision();
      const snapshot = await snapshotRevision();
      const js = jetstream(workerNc, { timeout: 1000 });
      await expect(js.publish("arbiter.rules.events", "{}")).rejects.toThrow();
      await expect(js.publish("$KV.arbiter-rules.snapshot", "{}")).rejects.toThrow();
      const jsm = await jetstreamManager(workerNc, { timeout: 1000 });
      const republish = { src: "wasmcloud.policy.changes", dest: "arbiter.rules.events" };
      await expect(
        jsm.streams.add({ name: "EVIL_REPUBLISH", subjects: ["wasmcloud.policy.changes"], republish }),
      ).rejects.toThrow();
      await expect(
        jsm.streams.add({
          name: "ARBITER_DECISIONS",
          subjects: ["arbiter.decisions.>"],
          republish: { src: "arbiter.decisions.recorded", dest: "arbiter.rules.events" },
        }),
      ).rejects.toThrow();
      await expect(
        jsm.streams.update("ARBITER_DECISIONS", {
          republish: { src: "arbiter.decisions.recorded", dest: "arbiter.rules.events" },
        }),
      ).rejects.toThrow();
      for (const subject of [
        "$JS.API.STREAM.LIST",
        "$JS.API.STREAM.NAMES",
        "$JS.API.STREAM.DELETE.ARBITER_RULES",
        "$JS.API.STREAM.PURGE.ARBITER_DECISIONS",
        "$JS.API.STREAM.PURGE.KV_arbiter-rules",
        "$JS.API.STREAM.MSG.DELETE.ARBITER_RULES",
        "$JS.API.STREAM.MSG.DELETE.ARBITER_DECISIONS",
        "$JS.API.STREAM.UPDATE.ARBITER_RULES",
        "$JS.API.STREAM.CREATE.ARBITER_REVOCATIONS",
        "$JS.API.CONSUMER.DURABLE.CREATE.ARBITER_RULES.spy",
        "$JS.API.ACCOUNT.PURGE.ARBITER",
        "$JS.API.STREAM.TEMPLATE.CREATE.EVIL",
        "$SYS.REQ.SERVER.PING",
      ]) {
        await expect(workerNc.request(subject, "{}", { timeout: 1000 }), subject).rejects.toThrow();
      }
      expect(await subscribeRefused(await connectAs("worker"), "_INBOX_arbiter_admin.>")).toBe(true);
      expect(await rulesRevision()).toBe(rules);
      expect(await snapshotRevision()).toBe(snapshot);
    });
  });
}
