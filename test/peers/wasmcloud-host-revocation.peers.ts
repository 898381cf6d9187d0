import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PolicyOverrideV1, resourceNames } from "@arbiter/protocol";
import { parseRulesDocument } from "@arbiter/rules";
import { generateKey } from "@arbiter/trust";
import { createWorker, type Worker } from "@arbiter/worker";
import { jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectTo } from "../harness/index.js";
import { enrolledWorkerSeed, type SingleNodeArbiter, startSingleNodeArbiter } from "../support/arbiter.js";
import { runArbiter } from "../support/cli.js";
import { wasmcloudHostBin } from "./peers-cache.js";
import {
  type RunningWasmcloudHost,
  record,
  requestsAbout,
  scaleFromFile,
  scaleOutcome,
  startWasmcloudHost,
  tinyComponent,
} from "./wasmcloud-host-driver.js";

// A permission revoked by a rules change, on a real wasmCloud 1.9 host: the host cached Arbiter's
// permit when it started the component; the override Arbiter sends after `rules apply --wait`
// overwrites that cache entry, so the host refuses the next start on its own, asking nobody. Once
// with the shared changes topic, once with workers per host and the host started with its seed
// and `--policy-changes-topic <changes topic>.<its key>`.

const LATTICE = "peers-revoke";
const POLICY_TOPIC = "wasmcloud.policy";
const CHANGES_TOPIC = "wasmcloud.policy.changes";
const COMPONENT = "peers-revoked";
const names = resourceNames();

const rules = (effect: "allow" | "deny") => `
version: 1
default: deny
rules:
  - id: the-revocable-component
    effect: ${effect}
    when: kind == "startComponent" && subject.id == "${COMPONENT}"
    message: ${effect === "allow" ? "permitted until revoked" : "revoked by the peers suite"}
`;

for (const perHost of [false, true]) describeRevocation(perHost);

function describeRevocation(perHost: boolean): void {
  let arbiter: SingleNodeArbiter;
  let second: Worker;
  let nc: NatsConnection;
  let host: RunningWasmcloudHost;
  let workDir: string;
  const hostKey = generateKey("N");
  // Where this host hears overrides, and where Arbiter publishes them.
  const hostChanges = perHost ? `${CHANGES_TOPIC}.${hostKey.publicKey}` : CHANGES_TOPIC;

  beforeAll(async () => {
    wasmcloudHostBin();
    arbiter = await startSingleNodeArbiter({ changesPerHost: perHost });
    second = createWorker({
      nc: arbiter.nc,
      logger: pino({ level: "silent" }),
      config: {
        id: "peers-second",
        adminKeys: [arbiter.signer.publicKey],
        workerSeed: await enrolledWorkerSeed(arbiter.admin, "peers-second"),
        workerKeys: [arbiter.worker.publicKey],
        changesPerHost: perHost,
      },
    });
    await second.start();
    const applied = await arbiter.admin.apply(parseRulesDocument(rules("allow")));
    await arbiter.worker.waitForRevision(applied.revision);
    await second.waitForRevision(applied.revision);
    nc = await connectTo(arbiter.server.url);
    workDir = mkdtempSync(join(tmpdir(), "arbiter-peers-revoke-"));
    host = await startWasmcloudHost({
      natsUrl: arbiter.server.url,
      lattice: LATTICE,
      policyTopic: POLICY_TOPIC,
      changesTopic: hostChanges,
      policyTimeoutMs: 5_000,
      env: { TMPDIR: workDir },
      hostSeed: hostKey.seed,
    });
    expect(host.hostId).toBe(hostKey.publicKey);
  });

  afterAll(async () => {
    await host?.process.stop();
    await second?.stop();
    await nc?.close();
    await arbiter?.stop();
    if (workDir) rmSync(workDir, { recursive: true, force: true });
  });

  async function decisionsLastSeq(): Promise<number> {
    const jsm = await jetstreamManager(nc);
    return (await jsm.streams.info(names.decisionsStream)).state.last_seq;
  }

  describe(`a permission revoked by a rules change, on a real wasmCloud 1.9 host (${perHost ? "per-host changes subject" : "shared changes topic"})`, () => {
    it("makes the host refuse the next start of the component from its own cache, without a new policy request", async () => {
      const file = join(workDir, "revoked.wasm");
      writeFileSync(file, tinyComponent(file));
      await using requests = await record(nc, POLICY_TOPIC);
      await using changes = await record(nc, hostChanges);
      await using shared = await record(nc, CHANGES_TOPIC);
      await using events = await record(nc, `wasmbus.evt.${LATTICE}.>`);

      await scaleFromFile(nc, host, COMPONENT, file);
      const started = await scaleOutcome(events, COMPONENT);
      expect(started.subject, started.text).toBe(`wasmbus.evt.${LATTICE}.component_scaled`);
      const [sent, ...more] = requestsAbout(requests, COMPONENT);
      expect(more).toEqual([]);
      const { requestId } = JSON.parse(sent ?? "{}") as { requestId: string };

      const rulesFile = join(workDir, "revoke.yaml");
      writeFileSync(rulesFile, rules("deny"));
      const applied = await runArbiter(["rules", "apply", rulesFile, "--wait", "--json"], {
        NATS_URL: arbiter.server.url,
        ARBITER_ADMIN_SEED: arbiter.adminSeed,
        ARBITER_ADMIN_KEYS: "",
        ARBITER_HOME: workDir,
        ARBITER_LOG_LEVEL: "warn",
      });
      expect(applied.code, applied.stderr).toBe(0);
      expect(JSON.parse(applied.stdout)).toMatchObject({
        overrides: 1,
        workers: [{ id: "peers-second" }, { id: arbiter.worker.id }].sort((a, b) => a.id.localeCompare(b.id)),
      });
      // The override is out, under the id the host sent: the host's own cache entry.
      const overrides = changes.seen.map((m) => PolicyOverrideV1.parse(JSON.parse(m.text)));
      expect(overrides).toEqual([
        { requestId, request_id: requestId, permitted: false, message: "revoked by the peers suite" },
      ]);
      if (perHost) expect(shared.seen).toEqual([]);

      const decisionsBefore = await decisionsLastSeq();
      const answeredBefore = arbiter.worker.stats().decisions + second.stats().decisions;
      const from = events.seen.length;
      await scaleFromFile(nc, host, COMPONENT, file);
      const refused = await scaleOutcome(events, COMPONENT, from);
      expect(refused.subject, refused.text).toBe(`wasmbus.evt.${LATTICE}.component_scale_failed`);
      expect(refused.text).toContain("Policy denied request to scale component");
      // Refused from the host's cache: no request on the policy topic, none decided, none recorded.
      expect(requestsAbout(requests, COMPONENT)).toHaveLength(1);
      expect(arbiter.worker.stats().decisions + second.stats().decisions).toBe(answeredBefore);
      expect(await decisionsLastSeq()).toBe(decisionsBefore);
    });
  });
}
