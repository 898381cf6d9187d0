/** Everything that goes into one server's configuration file. */
export interface ServerConfig {
  serverName: string;
  /** Address every listener binds to. */
  host: string;
  /** Client port; -1 lets the server pick a free one. */
  port: number;
  /** Monitoring (HTTP) port, -1 for a free one; `undefined` turns monitoring off. */
  monitorPort: number | undefined;
  /** JetStream store directory; `undefined` turns JetStream off. */
  storeDir: string | undefined;
  /** Cluster block; `undefined` runs the server alone. */
  cluster: { name: string; port: number; routes: readonly string[] } | undefined;
  debug: boolean;
  /** Configuration appended as it is (accounts, authorization, limits). */
  extra?: string | undefined;
}

/**
 * Renders `config` in nats-server's configuration syntax (checked against nats-server 2.9.10).
 * Strings are written as JSON strings, which the config parser reads as quoted strings.
 */
export function renderServerConfig(config: ServerConfig): string {
  const q = (value: string): string => JSON.stringify(value);
  const lines = [
    "# Written by @arbiter/embedded-nats.",
    `server_name: ${q(config.serverName)}`,
    `host: ${q(config.host)}`,
    `port: ${config.port}`,
  ];
  // 2.9.10 has no `http_host`; the host goes into `http` as host:port, IPv6 in brackets.
  if (config.monitorPort !== undefined)
    lines.push(`http: ${q(`${bracketIpv6(config.host)}:${config.monitorPort}`)}`);
  if (config.storeDir !== undefined) lines.push(`jetstream {`, `  store_dir: ${q(config.storeDir)}`, `}`);
  if (config.cluster) {
    lines.push(
      "cluster {",
      `  name: ${q(config.cluster.name)}`,
      `  host: ${q(config.host)}`,
      `  port: ${config.cluster.port}`,
      `  routes: [${config.cluster.routes.map(q).join(", ")}]`,
      "}",
    );
  }
  if (config.debug) lines.push("debug: true");
  if (config.extra) lines.push(config.extra);
  return `${lines.join("\n")}\n`;
}

/** `host` as it must appear before `:port` in a URL or listen address. */
export function bracketIpv6(host: string): string {
  return host.includes(":") && !host.startsWith("[") ? `[${host}]` : host;
}
