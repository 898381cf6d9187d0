import { existsSync } from "node:fs";
import { isNatsServerStartError } from "@arbiter/embedded-nats";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { describe, expect, it } from "vitest";
import { connectTo, startNatsCluster, startNatsServer, until } from "./harness/index.js";

/** True once no process with this pid exists any more (signal 0 only checks). */
function isGone(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return false;
  } catch {
    return true;
  }
}

describe("startNatsServer", () => {
  it("starts a JetStream server on a random port and stop removes it and its temp dir", async () => {
    await using server = await startNatsServer();
    expect(server.port).toBeGreaterThan(0);
    expect(server.port).not.toBe(4222);
    expect(server.url).toBe(`nats://127.0.0.1:${server.port}`);
    expect(server.monitorUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(server.running).toBe(true);
    expect(existsSync(server.storeDir)).toBe(true);
    {
      await using nc = await connectTo(server.url);
      const info = await (await jetstreamManager(nc)).getAccountInfo();
      expect(info.streams).toBe(0);
    }

    await server.stop();

    expect(server.running).toBe(false);
    expect(existsSync(server.storeDir)).toBe(false);
    expect(isGone(server.pid)).toBe(true);
    await server.stop(); // idempotent
  });

  it("keeps JetStream data across kill and restart on the same port", async () => {
    await using server = await startNatsServer();
    const { url, port, storeDir } = server;
    {
      await using nc = await connectTo(url);
      await (await jetstreamManager(nc)).streams.add({ name: "K", subjects: ["k.>"] });
      const js = jetstream(nc);
      for (const n of [1, 2, 3]) await js.publish(`k.${n}`, `m${n}`);
    }
    const killedPid = server.pid;

    await server.kill();

    expect(server.running).toBe(false);
    expect(isGone(killedPid)).toBe(true);
    expect(existsSync(storeDir)).toBe(true);

    await server.restart();

    expect(server.pid).not.toBe(killedPid);
    expect(server.port).toBe(port);
    expect(server.url).toBe(url);
    await using nc = await connectTo(url);
    const jsm = await jetstreamManager(nc);
    const messages = await until(
      async () => {
        const info = await jsm.streams.info("K");
        return info.state.messages === 3 && info.state.messages;
      },
      { name: "stream K to hold its 3 messages after restart", timeout: 10_000 },
    );
    expect(messages).toBe(3);
  });

  it("fails with the server's log when it exits before becoming ready", async () => {
    await using first = await startNatsServer({ jetstream: false });

    const error = await startNatsServer({ port: first.port, jetstream: false }).catch((err: unknown) => err);

    expect(isNatsServerStartError(error)).toBe(true);
    expect(String(error)).toMatch(/exited with code 1/);
    expect(String(error)).toMatch(/address already in use/);
  });
});

describe("startNatsCluster", () => {
  it("forms a three-node JetStream cluster that takes an R3 stream", async () => {
    await using cluster = await startNatsCluster();
    expect(cluster.servers.map((server) => server.serverName)).toEqual(["n1", "n2", "n3"]);
    expect(cluster.url).toBe(cluster.urls.join(","));
    const pids = cluster.servers.map((server) => server.pid);
    {
      await using nc = await connectTo(cluster.urls);
      const jsm = await jetstreamManager(nc);
      const stream = await jsm.streams.add({ name: "T", subjects: ["t.>"], num_replicas: 3 });
      expect(stream.config.num_replicas).toBe(3);

      // A new R3 stream's subjects reach the other servers' routes a moment after it is created: until
      // then a publish finds no responders (and stores nothing; the message id keeps a retry single).
      const ack = await until(
        () =>
          jetstream(nc)
            .publish("t.x", "hi", { msgID: "first" })
            .catch((err: unknown) => {
              if (/no responders/i.test(String(err))) return null;
              throw err;
            }),
        { name: "the R3 stream T to take a message" },
      );

      expect(ack).toMatchObject({ stream: "T", seq: 1 });
      const replicas = await until(
        async () => {
          const info = await jsm.streams.info("T");
          const current = (info.cluster?.replicas ?? []).filter((replica) => replica.current);
          return current.length === 2 && info.cluster;
        },
        { name: "stream T to have a leader and two current replicas" },
      );
      expect(replicas.leader).toMatch(/^n[123]$/);
    }

    await cluster.stop();

    expect(pids.every(isGone)).toBe(true);
    expect(cluster.servers.some((server) => existsSync(server.storeDir))).toBe(false);
  });
});

describe("until", () => {
  it("resolves with the first truthy value", async () => {
    let calls = 0;
    const value = await until(() => ++calls >= 3 && calls, { name: "the third call" });
    expect(value).toBe(3);
  });

  it("names what it waited for and the last error when it times out", async () => {
    const waiting = until(
      () => {
        throw new Error("not yet");
      },
      { name: "something impossible", timeout: 50 },
    );
    await expect(waiting).rejects.toThrow(/^timed out after 50ms waiting for something impossible: not yet$/);
  });
});
