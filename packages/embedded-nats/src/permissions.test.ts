import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import {
  accountLinks,
  renderAccountsConfig,
  renderClusterNodeConfig,
  renderSingleNodeConfig,
  rolePermissions,
} from "./permissions.js";

const deployed = (name: string) =>
  readFileSync(new URL(`../../../deploy/nats/${name}`, import.meta.url), "utf8");

describe("the shipped NATS configuration", () => {
  it("is what permissions.ts generates for lattice default (node scripts/nats-config.mjs rewrites it)", () => {
    expect(deployed("accounts.conf")).toBe(renderAccountsConfig({ lattice: "default" }));
    expect(deployed("single-node.conf")).toBe(renderSingleNodeConfig());
    expect(deployed("cluster-node.conf")).toBe(renderClusterNodeConfig());
  });

  it("sets no store_dir or port in single-node.conf, so -sd and -p choose them", () => {
    expect(renderSingleNodeConfig()).not.toMatch(/store_dir|^port|listen/m);
  });
});

describe("rolePermissions", () => {
  const roles = rolePermissions({ lattice: "default" });

  it("lets nobody list, delete, purge or update streams", () => {
    for (const role of Object.values(roles)) {
      for (const subject of role.publish.allow) {
        expect(subject).not.toMatch(
          /^\$JS\.API\.(STREAM\.(LIST|NAMES|DELETE|PURGE|UPDATE)|>)|^>$|^\$JS\.API\.\*/,
        );
      }
    }
  });

  it("lets hosts create only their lattice buckets, no durable consumers, no inbox but as answers", () => {
    const host = roles.host;
    expect(host.publish.allow.filter((s) => s.includes("STREAM.CREATE"))).toEqual([
      "$JS.API.STREAM.CREATE.KV_LATTICEDATA_default",
      "$JS.API.STREAM.CREATE.KV_CONFIGDATA_default",
    ]);
    expect(host.publish.allow.filter((s) => s.includes("DURABLE"))).toEqual([]);
    expect(host.publish.allow.filter((s) => s.startsWith("_INBOX"))).toEqual([]);
    expect(host.allowResponses).toBe(true);
    expect(host.publish.allow.every((s) => !s.includes("ARBITER") && !s.includes("arbiter"))).toBe(true);
  });

  it("keeps a lattice's wildcards off the policy service's topics", () => {
    const host = rolePermissions({ lattice: "wasmcloud" }).host;
    expect(host.publish.allow).toContain("wasmcloud.>");
    expect(host.publish.deny).toEqual(["wasmcloud.policy.changes", "wasmcloud.policy.changes.>"]);
    expect(host.subscribe.deny).toEqual(["wasmcloud.policy"]);
  });

  it("lets hosts hear per-host changes subjects and workers publish there, nobody else publish under the changes topic", () => {
    const { host, worker, admin } = rolePermissions();
    expect(host.subscribe.allow).toEqual(
      expect.arrayContaining(["wasmcloud.policy.changes", "wasmcloud.policy.changes.*"]),
    );
    expect(worker.publish.allow).toEqual(
      expect.arrayContaining(["wasmcloud.policy.changes", "wasmcloud.policy.changes.*"]),
    );
    for (const role of [host, admin]) {
      expect(role.publish.deny).toEqual(
        expect.arrayContaining(["wasmcloud.policy.changes", "wasmcloud.policy.changes.>"]),
      );
    }
    const text = renderAccountsConfig();
    const lattice = text.slice(text.indexOf("  LATTICE {"), text.indexOf("  LATTICE_JS {"));
    expect(lattice).toContain(
      '"wasmcloud.policy.changes.*": "_ARBITER_DROPPED.wasmcloud.policy.changes.{{wildcard(1)}}"',
    );
    expect(lattice).toContain('{ stream: { account: ARBITER, subject: "wasmcloud.policy.changes.*" } }');
  });

  it("refuses a lattice name whose `<lattice>.>` would reach inboxes, JetStream, the system or other lattices", () => {
    // `_INBOX.>` would let every host publish answers into every other host's inbox, `$JS.>` reach
    // the whole JetStream API of the hosts' buckets, `wasmbus.>` every lattice's control interface.
    for (const lattice of ["_INBOX", "$JS", "$SYS", "_R_", "wasmbus", "a.b", "*", ">", "", "a b"]) {
      expect(() => rolePermissions({ lattice }), JSON.stringify(lattice)).toThrow(
        expect.objectContaining({ code: "INVALID_CONFIG", message: expect.stringContaining("lattice") }),
      );
      expect(() => renderAccountsConfig({ lattice }), JSON.stringify(lattice)).toThrow();
    }
    for (const lattice of ["default", "wasmcloud", "prod-eu_1", "0b7f"]) {
      expect(rolePermissions({ lattice }).host.publish.allow).toContain(`${lattice}.>`);
    }
  });

  it("puts hosts in their own account, linked to Arbiter's by the policy service and the changes stream", () => {
    const text = renderAccountsConfig();
    expect(text).toMatch(/ARBITER \{[\s\S]*"arbiter-worker"[\s\S]*"arbiter-admin"[\s\S]*exports/);
    expect(text).toMatch(/LATTICE \{[\s\S]*"wasmcloud-host"[\s\S]*imports/);
    // The hosts' own JetStream is a third account without users, reached through imports.
    expect(text).toMatch(/LATTICE_JS \{\n\s*jetstream: enabled\n\s*exports/);
    expect(text.slice(text.indexOf("  LATTICE {"), text.indexOf("  LATTICE_JS {"))).not.toContain(
      "jetstream",
    );
    expect(accountLinks()).toEqual({
      service: "wasmcloud.policy",
      stream: "wasmcloud.policy.changes",
      localChangesMappedTo: "_ARBITER_DROPPED.wasmcloud.policy.changes",
      hostStream: "wasmcloud.policy.changes.*",
      localHostChangesMappedTo: "_ARBITER_DROPPED.wasmcloud.policy.changes.{{wildcard(1)}}",
      latticeEvents: [
        "wasmbus.evt.default.host_started",
        "wasmbus.evt.default.host_heartbeat",
        "wasmbus.evt.default.host_stopped",
        "wasmbus.evt.default",
      ],
      hostPing: "wasmbus.ctl.v1.default.host.ping",
      hostPingResponseThreshold: "5s",
    });
  });

  it("lets workers hear the lattice's host lifecycle events and ping its hosts, and nothing more of it", () => {
    expect(roles.worker.subscribe.allow.filter((s) => s.startsWith("wasmbus."))).toEqual([
      "wasmbus.evt.default.host_started",
      "wasmbus.evt.default.host_heartbeat",
      "wasmbus.evt.default.host_stopped",
      "wasmbus.evt.default",
    ]);
    expect(roles.worker.publish.allow.filter((s) => s.startsWith("wasmbus."))).toEqual([
      "wasmbus.ctl.v1.default.host.ping",
    ]);
    const text = renderAccountsConfig();
    const lattice = text.slice(text.indexOf("  LATTICE {"), text.indexOf("  LATTICE_JS {"));
    // Every host answers a ping: its answers are a stream, and only for a few seconds.
    expect(lattice).toContain(
      '{ service: "wasmbus.ctl.v1.default.host.ping", response_type: stream, response_threshold: "5s" }',
    );
  });

  it("gives workers and admins their own inboxes and nothing of the other's writes", () => {
    expect(roles.worker.subscribe.allow).toContain("_INBOX_arbiter_worker.>");
    expect(roles.admin.subscribe.allow).toEqual(["_INBOX_arbiter_admin.>"]);
    expect(roles.worker.publish.allow).not.toContain("arbiter.rules.events");
    expect(roles.admin.publish.allow).not.toContain("wasmcloud.policy.changes");
  });
});
