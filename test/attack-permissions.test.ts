import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { findNatsServer, renderAccountsConfig } from "@arbiter/embedded-nats";
import { jetstreamManager } from "@nats-io/jetstream";
import { describe, expect, it } from "vitest";
import { connectTo, startNatsServer, until } from "./harness/index.js";
import {
  describePermissionAttacks,
  operatorUsers,
  passwordUsers,
  TEST_PASSWORDS,
} from "./support/permission-attacks.js";

const ACCOUNTS = readFileSync(new URL("../deploy/nats/accounts.conf", import.meta.url), "utf8");
const SINGLE_NODE = new URL("../deploy/nats/single-node.conf", import.meta.url).pathname;

describePermissionAttacks("deploy/nats/accounts.conf on one server (password users)", async () => {
  const server = await startNatsServer({ extraConfig: ACCOUNTS, env: { ...TEST_PASSWORDS } });
  return passwordUsers(server.url, () => server.stop());
});

describePermissionAttacks("the same permissions as JWT users (operator mode)", async () => {
  const operator = operatorUsers();
  const server = await startNatsServer({ extraConfig: operator.config });
  return operator.secured(server.url, () => server.stop());
});

async function freePort(): Promise<number> {
  const probe = createServer();
  await new Promise<void>((resolve) => probe.listen(0, "127.0.0.1", resolve));
  const address = probe.address();
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  if (address === null || typeof address === "string") throw new Error("no port");
  return address.port;
}

describe("the lattice account's mapping of the changes topic", () => {
  it("is what keeps an answer steered by a host's reply subject from every host (without it, all hear it)", async () => {
    const withoutMapping = ACCOUNTS.replace(/\n {4}mappings: \{\n[\s\S]*?\n {4}\}/, "");
    expect(withoutMapping).not.toBe(ACCOUNTS);
    await using server = await startNatsServer({ extraConfig: withoutMapping, env: { ...TEST_PASSWORDS } });
    const as = (user: string, pass: string | undefined, inboxPrefix?: string) =>
      connectTo(server.url, { user, pass, ...(inboxPrefix ? { inboxPrefix } : {}) });
    await using service = await as(
      "arbiter-worker",
      TEST_PASSWORDS["ARBITER_WORKER_PASSWORD"],
      "_INBOX_arbiter_worker",
    );
    // The worker cannot see where its answer goes: a service import hands it a `_R_.` reply subject.
    const replies: string[] = [];
    service.subscribe("wasmcloud.policy", {
      callback: (_err, msg) => {
        replies.push(msg.reply ?? "");
        msg.respond('{"requestId":"victims-request","permitted":true,"message":null}');
      },
    });
    await service.flush();
    await using attacker = await as("wasmcloud-host", TEST_PASSWORDS["WASMCLOUD_HOST_PASSWORD"]);
    await using victim = await as("wasmcloud-host", TEST_PASSWORDS["WASMCLOUD_HOST_PASSWORD"]);
    const heard: string[] = [];
    victim.subscribe("wasmcloud.policy.changes", {
      callback: (_err, msg) => {
        heard.push(msg.string());
      },
    });
    await victim.flush();
    // A host of per-host overrides, on its own subject.
    const own: string[] = [];
    victim.subscribe("wasmcloud.policy.changes.NVICTIM", {
      callback: (_err, msg) => {
        own.push(msg.string());
      },
    });
    await victim.flush();
    attacker.publish("wasmcloud.policy", "{}", { reply: "wasmcloud.policy.changes" });
    await until(() => heard.length > 0, { name: "the steered answer reaches another host" });
    attacker.publish("wasmcloud.policy", "{}", { reply: "wasmcloud.policy.changes.NVICTIM" });
    await until(() => own.length > 0, { name: "the answer steered onto a host's own subject reaches it" });
    expect(replies[0]).toMatch(/^_R_\./);
  });
});

describe("a lattice named like the policy topic's first token (`wasmcloud`)", () => {
  it("gives hosts `wasmcloud.>` without another host's policy requests or the changes topic to publish on", async () => {
    await using server = await startNatsServer({
      extraConfig: renderAccountsConfig({ lattice: "wasmcloud" }),
      env: { ...TEST_PASSWORDS },
    });
    const as = (user: string, pass: string | undefined, inboxPrefix?: string) =>
      connectTo(server.url, { user, pass, ...(inboxPrefix ? { inboxPrefix } : {}) });
    await using service = await as(
      "arbiter-worker",
      TEST_PASSWORDS["ARBITER_WORKER_PASSWORD"],
      "_INBOX_arbiter_worker",
    );
    service.subscribe("wasmcloud.policy", {
      queue: "arbiter",
      callback: (_err, msg) => {
        msg.respond('{"requestId":"r","permitted":true,"message":null}');
      },
    });
    await service.flush();
    const hostPassword = TEST_PASSWORDS["WASMCLOUD_HOST_PASSWORD"];
    await using attacker = await as("wasmcloud-host", hostPassword);
    await using victim = await as("wasmcloud-host", hostPassword);
    const heard: string[] = [];
    for (const subject of ["wasmcloud.>", "wasmcloud.*", "wasmcloud.policy.>"]) {
      attacker.subscribe(subject, {
        callback: (_err, msg) => {
          heard.push(`${subject} ${msg.subject}`);
        },
      });
    }
    await attacker.flush();
    const answer = await victim.request("wasmcloud.policy", '{"requestId":"r"}', { timeout: 5000 });
    expect(answer.string()).toContain('"permitted":true');
    const overrides: string[] = [];
    attacker.subscribe("wasmcloud.policy.changes", {
      callback: (_err, msg) => {
        overrides.push(msg.string());
      },
    });
    await attacker.flush();
    victim.publish("wasmcloud.policy.changes", '{"requestId":"r","permitted":true,"message":"forged"}');
    // Nor on another host's own subject, under `wasmcloud.>` though it is.
    victim.publish(
      "wasmcloud.policy.changes.NVICTIM",
      '{"requestId":"r","permitted":true,"message":"forged"}',
    );
    // The victim's lattice traffic after its request reaches the attacker, in order: anything of
    // the policy topic would have come before it.
    victim.publish("wasmcloud.component.sentinel", "x");
    await until(() => heard.includes("wasmcloud.> wasmcloud.component.sentinel"), {
      name: "the victim's lattice subject reaches the attacker",
    });
    expect(heard.filter((h) => h.includes("wasmcloud.policy"))).toEqual([]);
    expect(overrides).toEqual([]);
    const direct = attacker.subscribe("wasmcloud.policy");
    await attacker.flush();
    expect(direct.isClosed()).toBe(true);
  });
});

describe("deploy/nats/single-node.conf", () => {
  it("starts as `nats-server -c single-node.conf -p PORT -sd DIR` and serves JetStream to the admin", async () => {
    const port = await freePort();
    const dir = mkdtempSync(join(tmpdir(), "arbiter-single-node-"));
    const child = spawn(await findNatsServer(), ["-c", SINGLE_NODE, "-p", String(port), "-sd", dir], {
      env: { ...process.env, ...TEST_PASSWORDS },
      stdio: "ignore",
    });
    try {
      const nc = await until(
        () =>
          connectTo(`nats://127.0.0.1:${port}`, {
            user: "arbiter-admin",
            pass: TEST_PASSWORDS["ARBITER_ADMIN_PASSWORD"],
            inboxPrefix: "_INBOX_arbiter_admin",
          }).catch(() => undefined),
        { name: "the server accepts the admin", timeout: 20_000 },
      );
      const info = await (await jetstreamManager(nc)).getAccountInfo();
      expect(info.streams).toBe(0);
      await nc.close();
    } finally {
      const exited = new Promise((resolve) => child.once("exit", resolve));
      child.kill("SIGTERM");
      await exited;
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
