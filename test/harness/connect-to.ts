import { connect, type NatsConnection, type NodeConnectionOptions } from "@nats-io/transport-node";

/**
 * Connects to `urls` (one URL, a comma-joined list or an array). Disposing the connection
 * (`await using nc = await connectTo(server.url)`) closes it rather than draining, because a test
 * may have killed the server, and draining towards a dead server waits for a reconnect.
 * Rejects like `connect` when no server answers.
 */
export async function connectTo(
  urls: string | readonly string[],
  options: Omit<NodeConnectionOptions, "servers"> = {},
): Promise<NatsConnection> {
  const servers = typeof urls === "string" ? urls.split(",") : [...urls];
  const nc = await connect({ ...options, servers });
  return Object.assign(nc, { [Symbol.asyncDispose]: (): Promise<void> => nc.close() });
}
