import { randomUUID } from "node:crypto";
import type { NatsConnection, Subscription } from "@nats-io/nats-core";

/** Options of {@link createLatticeHost}; the defaults are a 1.x host's. */
export interface LatticeHostOptions {
  /** The connection to use; it belongs to the caller. */
  readonly nc: NatsConnection;
  /** The host's public key (`N…`): the `source` of its events and the `id` of its ping answers. */
  readonly publicKey: string;
  readonly lattice: string;
  readonly labels?: Record<string, string>;
  readonly friendlyName?: string;
  readonly version?: string;
  /**
   * `v1` (default) publishes each event on `wasmbus.evt.{lattice}.{name}`; `v0.82` also on
   * `wasmbus.evt.{lattice}`, as 0.82 hosts do.
   */
  readonly lineage?: "v1" | "v0.82";
}

/**
 * A wasmCloud host's presence in its lattice, as the 1.x host crate makes it (`wasmbus/mod.rs`,
 * `wasmbus/event.rs`, `wasmbus/ctl.rs`): it answers `wasmbus.ctl.v1.{lattice}.host.ping` with
 * `CtlResponse<Host>`, and publishes `host_started`, `host_heartbeat` and `host_stopped` as
 * CloudEvents 1.0 JSON whose `source` is its key. Heartbeats are sent when asked (a real host
 * sends one every 30 s).
 */
export interface LatticeHost {
  /** Answers pings, then publishes `host_started`. */
  start(): Promise<void>;
  /** Publishes one `host_heartbeat` (data: the host inventory). */
  heartbeat(): Promise<void>;
  /** A graceful stop: stops answering pings, then publishes `host_stopped` (data: only `{labels}`). */
  stop(): Promise<void>;
  /** A crash: stops answering pings and publishes nothing. */
  crash(): Promise<void>;
  /** Pings answered so far. */
  readonly pingsAnswered: number;
}

/**
 * The CloudEvents 1.0 JSON of lattice event `name` from host `source`, field for field as the host
 * crate's `event::publish` serialises it (a ULID as a hyphenated UUID for `id`, RFC 3339 `time`).
 */
export function latticeEventJson(name: string, source: string, data: unknown, now = new Date()): string {
  return JSON.stringify({
    specversion: "1.0",
    id: randomUUID(),
    type: `com.wasmcloud.lattice.${name}`,
    source,
    datacontenttype: "application/json",
    time: now.toISOString(),
    data,
  });
}

/** Creates the lattice presence of a reference host; nothing is sent before `start()`. */
export function createLatticeHost(options: LatticeHostOptions): LatticeHost {
  return new LatticeHostImpl(options);
}

class LatticeHostImpl implements LatticeHost {
  readonly #options: LatticeHostOptions;
  readonly #startedAt = Date.now();
  #ping: Subscription | null = null;
  #answered = 0;

  constructor(options: LatticeHostOptions) {
    this.#options = options;
  }

  get pingsAnswered(): number {
    return this.#answered;
  }

  async start(): Promise<void> {
    const { nc, lattice } = this.#options;
    // A plain subscription: every host answers every ping.
    this.#ping = nc.subscribe(`wasmbus.ctl.v1.${lattice}.host.ping`, {
      callback: (err, msg) => {
        if (err !== null || !msg.reply) return;
        this.#answered++;
        msg.respond(JSON.stringify({ success: true, message: "", response: this.#hostSummary() }));
      },
    });
    await nc.flush();
    await this.#publish("host_started", {
      friendly_name: this.#friendlyName(),
      labels: this.#labels(),
      uptime_seconds: 0,
      version: this.#version(),
    });
  }

  async heartbeat(): Promise<void> {
    const uptime = this.#uptimeSeconds();
    await this.#publish("host_heartbeat", {
      components: [],
      providers: [],
      host_id: this.#options.publicKey,
      friendly_name: this.#friendlyName(),
      labels: this.#labels(),
      version: this.#version(),
      uptime_human: `${uptime}s`,
      uptime_seconds: uptime,
    });
  }

  async stop(): Promise<void> {
    await this.crash();
    await this.#publish("host_stopped", { labels: this.#labels() });
  }

  async crash(): Promise<void> {
    const ping = this.#ping;
    this.#ping = null;
    if (ping !== null && !ping.isClosed()) ping.unsubscribe();
    await this.#options.nc.flush();
  }

  /** The control interface's `Host`, fields in the struct's order, `None`s left out. */
  #hostSummary(): Record<string, unknown> {
    const uptime = this.#uptimeSeconds();
    return {
      friendly_name: this.#friendlyName(),
      id: this.#options.publicKey,
      labels: this.#labels(),
      lattice: this.#options.lattice,
      uptime_human: `${uptime}s`,
      uptime_seconds: uptime,
      version: this.#version(),
    };
  }

  async #publish(name: string, data: unknown): Promise<void> {
    const { nc, lattice, publicKey, lineage } = this.#options;
    const event = latticeEventJson(name, publicKey, data);
    nc.publish(`wasmbus.evt.${lattice}.${name}`, event);
    if (lineage === "v0.82") nc.publish(`wasmbus.evt.${lattice}`, event);
    await nc.flush();
  }

  #friendlyName(): string {
    return (
      this.#options.friendlyName ?? `reference-host-${this.#options.publicKey.slice(1, 7).toLowerCase()}`
    );
  }

  #labels(): Record<string, string> {
    return this.#options.labels ?? {};
  }

  #version(): string {
    return this.#options.version ?? "1.9.2";
  }

  #uptimeSeconds(): number {
    return Math.floor((Date.now() - this.#startedAt) / 1000);
  }
}
