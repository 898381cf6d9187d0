import { randomUUID } from "node:crypto";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadRequestTemplate, runLoad } from "../apps/cli/src/bench/load.js";
import { connectTo, type NatsServerProcess, startNatsServer } from "./harness/index.js";

const FIXTURES = fileURLToPath(new URL("./data/wasmcloud-v1/", import.meta.url));
const TEMPLATES = [
  loadRequestTemplate(`${FIXTURES}start-component.json`, "start-component.json", false),
  loadRequestTemplate(`${FIXTURES}start-provider.json`, "start-provider.json", true),
];

// The load generator of `arbiter bench` against responders that answer as the OPA example's server
// does (a new random requestId) and one that also gets one payload wrong.
describe("bench load", () => {
  let server: NatsServerProcess;
  beforeAll(async () => {
    server = await startNatsServer();
  });
  afterAll(async () => {
    await server?.stop();
  });

  const measure = async (subject: string, flipKind: string | null, requestIdMustEcho: boolean) => {
    const responder = await connectTo(server.url);
    const nc = await connectTo(server.url);
    try {
      responder.subscribe(subject, {
        callback: (_err, msg) => {
          const request = msg.json<{ kind: string }>();
          const permitted = request.kind === "startProvider";
          msg.respond(
            JSON.stringify({
              permitted: request.kind === flipKind ? !permitted : permitted,
              requestId: randomUUID(),
            }),
          );
        },
      });
      await responder.flush();
      return await runLoad({
        nc,
        subject,
        templates: TEMPLATES,
        expectPermitted: (t) => t.permittedUnderExampleRules,
        requestIdMustEcho,
        concurrency: 4,
        warmupMs: 0,
        durationMs: 300,
        timeoutMs: 5000,
        signal: new AbortController().signal,
      });
    } finally {
      await nc.close();
      await responder.close();
    }
  };

  it("counts a requestId not echoed apart from mismatches when the phase allows it", async () => {
    const result = await measure("bench.allowed", null, false);
    expect(result.answers).toBeGreaterThan(0);
    expect(result.requestIdNotEchoed).toBe(result.answers);
    expect(result.mismatches).toBe(0);
    expect(result.wrongAnswersByPayload).toEqual({});
  });

  it("counts a requestId not echoed as a mismatch by default", async () => {
    const result = await measure("bench.strict", null, true);
    expect(result.answers).toBeGreaterThan(0);
    expect(result.mismatches).toBe(result.answers);
    expect(result.wrongAnswersByPayload).toEqual({});
  });

  it("says which payloads got another answer than expected", async () => {
    const result = await measure("bench.wrong", "startComponent", false);
    const wrong = result.wrongAnswersByPayload["start-component.json"] ?? 0;
    expect(wrong).toBeGreaterThan(0);
    expect(Object.keys(result.wrongAnswersByPayload)).toEqual(["start-component.json"]);
    expect(result.mismatches).toBe(wrong);
  });
});
