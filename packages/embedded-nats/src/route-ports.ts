import { readFile } from "node:fs/promises";
import { createServer, type Server } from "node:net";

/** The range Linux uses when nothing else is known: `net.ipv4.ip_local_port_range`'s default. */
const LINUX_DEFAULT_EPHEMERAL: PortRange = { low: 32_768, high: 60_999 };
/** Lowest port handed out for routes; below it sit the well-known and commonly configured services. */
const LOWEST_ROUTE_PORT = 10_000;
/** Fewer candidates than this below the ephemeral range, and routes fall back to the OS's choice. */
const SMALLEST_ROUTE_RANGE = 1_000;

/** An inclusive range of TCP ports. */
export interface PortRange {
  low: number;
  high: number;
}

/**
 * Where cluster route ports are drawn from: below the OS's ephemeral range, so that neither a node's own
 * `port: -1` listener nor an outgoing connection can be handed a route port between its reservation and
 * its bind. Undefined when that leaves too few ports; callers then use ports the OS picks.
 */
export function routePortRange(ephemeral: PortRange): PortRange | undefined {
  const high = Math.min(ephemeral.low - 1, 65_535);
  return high - LOWEST_ROUTE_PORT + 1 >= SMALLEST_ROUTE_RANGE ? { low: LOWEST_ROUTE_PORT, high } : undefined;
}

/** Parses `/proc/sys/net/ipv4/ip_local_port_range` ("32768\t60999"); undefined when it is not two ports. */
export function parseEphemeralRange(text: string): PortRange | undefined {
  const [low, high, ...rest] = text.trim().split(/\s+/).map(Number);
  if (rest.length > 0 || low === undefined || high === undefined) return undefined;
  if (!Number.isInteger(low) || !Number.isInteger(high) || low < 1 || high > 65_535 || low > high)
    return undefined;
  return { low, high };
}

async function ephemeralRange(): Promise<PortRange> {
  try {
    return (
      parseEphemeralRange(await readFile("/proc/sys/net/ipv4/ip_local_port_range", "utf8")) ??
      LINUX_DEFAULT_EPHEMERAL
    );
  } catch {
    return LINUX_DEFAULT_EPHEMERAL;
  }
}

/**
 * Finds `count` distinct free ports for cluster routes, holding them all open while it looks and
 * releasing them before it resolves. Ports come from {@link routePortRange} at random, or from the OS
 * when that range is too small. Another process may still bind one before nats-server does; that node
 * then fails to start with "address already in use", which {@link isPortTaken} recognises.
 */
export async function reserveRoutePorts(host: string, count: number): Promise<number[]> {
  const range = routePortRange(await ephemeralRange());
  const servers: Server[] = [];
  try {
    const ports: number[] = [];
    for (let tries = 0; ports.length < count; tries++) {
      if (tries >= count * 50)
        throw new Error(`found only ${ports.length} of ${count} free ports on ${host}`);
      const wanted = range ? range.low + Math.floor(Math.random() * (range.high - range.low + 1)) : 0;
      if (ports.includes(wanted)) continue;
      const server = createServer();
      const port = await listenOn(server, host, wanted);
      if (port === undefined) continue;
      servers.push(server);
      ports.push(port);
    }
    return ports;
  } finally {
    await Promise.all(servers.map((server) => new Promise<void>((resolve) => server.close(() => resolve()))));
  }
}

/** Resolves with the bound port, or undefined when `port` is taken. */
function listenOn(server: Server, host: string, port: number): Promise<number | undefined> {
  return new Promise((resolve, reject) => {
    server.once("error", (err: NodeJS.ErrnoException) => {
      if (err.code === "EADDRINUSE" || err.code === "EACCES") resolve(undefined);
      else reject(err);
    });
    server.listen(port, host, () => {
      const address = server.address();
      if (address === null || typeof address === "string") reject(new Error(`no TCP port for ${host}`));
      else resolve(address.port);
    });
  });
}

/** True when a node failed to start because a port it was given was taken in the meantime. */
export function isPortTaken(err: unknown): boolean {
  return err instanceof Error && /address already in use/.test(err.message);
}
