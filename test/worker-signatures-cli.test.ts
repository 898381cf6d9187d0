import { createHostPolicyClient } from "@arbiter/host";
import { PolicyResponseV1, type StartProviderBodyV1 } from "@arbiter/protocol";
import { parseRulesDocument } from "@arbiter/rules";
import { createRulesAdmin, openJetStreamStore } from "@arbiter/store";
import { createSigner, generateKey } from "@arbiter/trust";
import type { NatsConnection } from "@nats-io/nats-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectTo, type NatsServerProcess, startNatsServer, until } from "./harness/index.js";
import { configuredWorkerEnv } from "./support/arbiter.js";
import { runArbiter, spawnArbiter } from "./support/cli.js";
import { exampleRulesText, fixtureBytes, fixtureJson } from "./support/fixtures.js";

describe("arbiter worker --request-signatures", () => {
  let server: NatsServerProcess;
  let nc: NatsConnection;
  let env: Record<string, string>;
  const admin = createSigner(generateKey("O").seed, "O");
  const clusterSeed = generateKey("C").seed;
  const cluster = createSigner(clusterSeed, "C");

  beforeAll(async () => {
    server = await startNatsServer();
    nc = await connectTo(server.url);
    await createRulesAdmin({ store: await openJetStreamStore(nc), signer: admin }).apply(
      parseRulesDocument(exampleRulesText()),
    );
    env = {
      NATS_URL: server.url,
      ARBITER_ADMIN_KEYS: admin.publicKey,
      ARBITER_LOG_LEVEL: "warn",
      WASMCLOUD_CLUSTER_ISSUERS: "",
      ARBITER_REQUEST_SIGNATURES: "",
      ...configuredWorkerEnv(),
    };
  });
  afterAll(async () => {
    await nc?.close();
    await server?.stop();
  });

  it("exits 2 naming the setting for a bad mode, a key that is no cluster key, or required with no issuers", async () => {
    const cases: Array<[string[], Record<string, string>, RegExp]> = [
      [
        ["--request-signatures", "sometimes"],
        {},
        /--request-signatures \(ARBITER_REQUEST_SIGNATURES\) "sometimes"/,
      ],
      [
        ["--request-signatures", "required"],
        {},
        /--cluster-issuers \(WASMCLOUD_CLUSTER_ISSUERS\): --request-signatures \(ARBITER_REQUEST_SIGNATURES\) is required but no cluster issuers/,
      ],
      [
        [],
        { ARBITER_REQUEST_SIGNATURES: "required", WASMCLOUD_CLUSTER_ISSUERS: admin.publicKey },
        /--cluster-issuers.*expected C/,
      ],
      [["--max-token-age", "soon"], {}, /--max-token-age \(ARBITER_MAX_TOKEN_AGE\) "soon"/],
    ];
    for (const [args, extra, message] of cases) {
      const result = await runArbiter(["worker", ...args], { ...env, ...extra });
      expect(result.code, args.join(" ")).toBe(2);
      expect(result.stderr, args.join(" ")).toMatch(message);
    }
  });

  it("takes the mode and issuers from the environment: signed requests are decided, unsigned ones denied", async () => {
    await using worker = spawnArbiter(["worker", "--json"], {
      ...env,
      ARBITER_REQUEST_SIGNATURES: "required",
      WASMCLOUD_CLUSTER_ISSUERS: cluster.publicKey,
    });
    await until(() => worker.stdout().includes('"status"'), { name: "the worker ready", timeout: 20_000 });
    const provider = fixtureJson("start-provider") as ReturnType<typeof fixtureJson> & {
      host: { publicKey: string; lattice: string; labels: Record<string, string> };
      request: StartProviderBodyV1;
    };
    const host = createHostPolicyClient({
      nc,
      host: provider.host,
      changesTopic: null,
      timeoutMs: 5000,
      clusterSeed,
    });
    expect(await host.evaluateStartProvider(provider.request)).toMatchObject({ permitted: true });
    const reply = await nc.request("wasmcloud.policy", fixtureBytes("start-provider"), { timeout: 5000 });
    const unsigned = PolicyResponseV1.parse(JSON.parse(reply.string()));
    expect(unsigned.permitted).toBe(false);
    expect(unsigned.message).toContain("(unsigned)");
  });
});
