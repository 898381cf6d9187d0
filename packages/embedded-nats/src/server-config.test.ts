import { describe, expect, it } from "vitest";
import { bracketIpv6, renderServerConfig } from "./server-config.js";

describe("renderServerConfig", () => {
  it("renders a clustered JetStream server with quoted strings", () => {
    const text = renderServerConfig({
      serverName: "n1",
      host: "127.0.0.1",
      port: -1,
      monitorPort: -1,
      storeDir: '/tmp/a "b"',
      cluster: { name: "c", port: 6222, routes: ["nats-route://127.0.0.1:6223"] },
      debug: true,
    });

    expect(text).toBe(
      [
        "# Written by @arbiter/embedded-nats.",
        'server_name: "n1"',
        'host: "127.0.0.1"',
        "port: -1",
        'http: "127.0.0.1:-1"',
        "jetstream {",
        '  store_dir: "/tmp/a \\"b\\""',
        "}",
        "cluster {",
        '  name: "c"',
        '  host: "127.0.0.1"',
        "  port: 6222",
        '  routes: ["nats-route://127.0.0.1:6223"]',
        "}",
        "debug: true",
        "",
      ].join("\n"),
    );
  });

  it("leaves out monitoring, JetStream and clustering when they are off", () => {
    const text = renderServerConfig({
      serverName: "solo",
      host: "::1",
      port: 4333,
      monitorPort: undefined,
      storeDir: undefined,
      cluster: undefined,
      debug: false,
    });

    expect(text).not.toMatch(/http|jetstream|cluster|debug/);
    expect(text).toContain('host: "::1"');
  });

  it("brackets IPv6 hosts only", () => {
    expect(bracketIpv6("::1")).toBe("[::1]");
    expect(bracketIpv6("[::1]")).toBe("[::1]");
    expect(bracketIpv6("127.0.0.1")).toBe("127.0.0.1");
  });
});
