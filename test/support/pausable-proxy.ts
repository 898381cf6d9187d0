import { createConnection, createServer, type Socket } from "node:net";

/** A TCP relay to a NATS server whose traffic can be held (both ways) and let go again. */
export interface PausableProxy extends AsyncDisposable {
  /** `nats://127.0.0.1:<port>` of the relay. */
  readonly url: string;
  /** Holds every byte from now on, in both directions, on every connection. */
  pause(): void;
  /** Delivers what was held, in order, and relays again. */
  resume(): void;
  /** Closes every connection relayed now (a link that breaks); clients connecting again are relayed. */
  drop(): void;
}

/**
 * Starts a relay to `url` (a `nats://host:port` URL): a client connected through it is a real NATS
 * client on a real connection that can be made slow, as a congested link makes it, without mocking
 * NATS. Dispose to close the relay and its connections.
 */
export async function startPausableProxy(url: string): Promise<PausableProxy> {
  const target = new URL(url);
  const sockets = new Set<Socket>();
  let held: { to: Socket; chunk: Buffer }[] | null = null;
  const relay = (from: Socket, to: Socket) => {
    from.on("data", (chunk: Buffer) => {
      if (held !== null) held.push({ to, chunk });
      else to.write(chunk);
    });
    from.on("close", () => to.destroy());
    from.on("error", () => to.destroy());
  };
  const server = createServer((client) => {
    const upstream = createConnection({ host: target.hostname, port: Number(target.port) });
    sockets.add(client).add(upstream);
    relay(client, upstream);
    relay(upstream, client);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  if (address === null || typeof address === "string") throw new Error("the relay has no TCP port");
  return {
    url: `nats://127.0.0.1:${address.port}`,
    pause: () => {
      held ??= [];
    },
    resume: () => {
      const pending = held ?? [];
      held = null;
      for (const { to, chunk } of pending) to.write(chunk);
    },
    drop: () => {
      for (const socket of sockets) socket.destroy();
      sockets.clear();
    },
    [Symbol.asyncDispose]: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
