import {
  cacheKeyV1,
  cacheKeyV082,
  DEFAULT_CHANGES_TOPIC,
  DEFAULT_POLICY_TOPIC,
  HostInfoV1,
  normalizeV082,
  type PerformInvocationBodyV1,
  type PolicyRequestV1,
  type PolicyRequestV082,
  type StartComponentBodyV1,
  type StartProviderBodyV1,
} from "@arbiter/protocol";
import { createSigner, POLICY_INVOCATION_HEADER, type Signer, signPolicyRequest } from "@arbiter/trust";
import {
  headers,
  type NatsConnection,
  RequestError,
  type Subscription,
  TimeoutError,
} from "@nats-io/nats-core";
import { z } from "zod";
import { HostClientStoppedError, HostConfigError } from "./errors.js";
import {
  buildRequestV1,
  buildRequestV082,
  decodeResponse,
  encodeRequest,
  type HostActionV1,
  type LegacyRequestInput,
  newRequestId,
} from "./host-wire.js";

/** Options of {@link createHostPolicyClient}; the defaults are the wasmCloud host's. */
export interface HostPolicyClientOptions {
  /** The connection to use; it belongs to the caller, who closes it. */
  readonly nc: NatsConnection;
  /**
   * `--policy-topic` / `WASMCLOUD_POLICY_TOPIC`; default `wasmcloud.policy` (Arbiter's). A real host
   * has no default: `null` reproduces a host started without one, which asks no one and permits
   * everything, caching nothing.
   */
  readonly policyTopic?: string | null;
  /** `--policy-changes-topic`; default `wasmcloud.policy.changes` (a real host: none); `null` = no subscription. */
  readonly changesTopic?: string | null;
  /** `WASMCLOUD_POLICY_TIMEOUT` in milliseconds; default 1000. */
  readonly timeoutMs?: number;
  /** What the host reports about itself in every 1.x request. */
  readonly host: {
    readonly publicKey: string;
    readonly lattice: string;
    readonly labels: Record<string, string>;
  };
  /**
   * Which host generation's concurrency to reproduce (default `v1`). A 1.x host looks the cache up,
   * releases it and then asks, so identical concurrent evaluations each send a request; a 0.82 host
   * holds the cache lock across the request, so evaluations and overrides run one at a time.
   */
  readonly lineage?: "v1" | "v0.82";
  /**
   * Real hosts cache whatever response arrives, whatever its `requestId` (default `false`, the
   * host's behaviour; mismatches are counted in `stats().mismatchedRequestIds`). `true` denies such
   * a response instead, not cached, with `failure: "mismatched-request-id"`.
   */
  readonly strictRequestId?: boolean;
  /**
   * Signs every request as a zero-trust invocation with this cluster seed (`SC…`, as
   * `WASMCLOUD_CLUSTER_SEED`): the token goes in the `Wasmcloud-Invocation` header. A real 1.x
   * host does not sign its policy requests; a sidecar in front of it, or these tests, do.
   */
  readonly clusterSeed?: string;
  /**
   * Where request ids come from (default: a new ULID per request, as the host draws them). A test
   * gives ids to reproduce a host that sent the same requests, e.g. to replay overrides onto it.
   */
  readonly requestIds?: () => string;
}

/** Why an answer is a fail-closed denial rather than the policy service's decision. */
export type PolicyFailure =
  | "timeout"
  | "no-responders"
  | "undecodable"
  | "mismatched-request-id"
  | "request-failed";

/** The outcome of one evaluation, as the host would act on it. */
export interface PolicyAnswer {
  readonly permitted: boolean;
  readonly message: string | null;
  /** The id of the cached or received response, or of the request that failed. */
  readonly requestId: string | null;
  /** True when the answer came from the cache and no request was sent. */
  readonly cached: boolean;
  /** Set when the host denied on its own (fail closed); such answers are never cached. */
  readonly failure?: PolicyFailure;
}

/** A cached decision: the response the host stored (or the override that replaced it). */
export interface CacheEntry {
  readonly permitted: boolean;
  readonly message: string | null;
  readonly requestId: string;
}

/** Counters for tests; every number only grows. */
export interface HostPolicyStats {
  /** Requests published on the policy topic. */
  readonly requests: number;
  /** Evaluations answered from the cache. */
  readonly cacheHits: number;
  /** Evaluations denied fail-closed (see {@link PolicyFailure}). */
  readonly failures: number;
  /** Change messages that overwrote a cache entry. */
  readonly overridesApplied: number;
  /** Change messages for a request id this client does not know. */
  readonly overridesIgnored: number;
  /** Change messages that are not a response JSON. */
  readonly overridesUndecodable: number;
  /** Responses whose `requestId` differs from the request's. */
  readonly mismatchedRequestIds: number;
}

/** What happened to one message from the changes topic; given to `onOverride` listeners. */
export type OverrideEvent =
  | {
      readonly outcome: "applied";
      readonly requestId: string;
      readonly cacheKey: string;
      readonly permitted: boolean;
      readonly message: string | null;
      /** The entry that was replaced (null if there was none). */
      readonly previous: CacheEntry | null;
    }
  | {
      readonly outcome: "unknown-request-id";
      readonly requestId: string;
      readonly permitted: boolean;
      readonly message: string | null;
    }
  | { readonly outcome: "undecodable"; readonly reason: string };

/**
 * Lifecycle: `starting` until `start()` resolves, `ready`, `degraded` when the changes
 * subscription ended on its own (closed connection, permission error), `stopped` after `stop()`.
 */
export type HostPolicyClientStatus = "starting" | "ready" | "degraded" | "stopped";

/** A wasmCloud host's policy client, reproducing the host's requests, cache and overrides. */
export interface HostPolicyClient extends AsyncDisposable {
  /** Current lifecycle state. */
  readonly status: HostPolicyClientStatus;
  /**
   * Subscribes to the changes topic (when configured) and resolves once the server has the
   * subscription. Idempotent; rejects with {@link HostClientStoppedError} after `stop()`.
   */
  start(): Promise<void>;
  /** Drains the changes subscription; the connection stays open. Idempotent. */
  stop(): Promise<void>;
  /**
   * Asks whether a component may start. Never rejects for a policy outcome: failures are
   * denials with `failure` set; rejects with `HostRequestError` for an invalid body.
   */
  evaluateStartComponent(body: StartComponentBodyV1): Promise<PolicyAnswer>;
  /** Asks whether a provider may start; as {@link HostPolicyClient.evaluateStartComponent}. */
  evaluateStartProvider(body: StartProviderBodyV1): Promise<PolicyAnswer>;
  /** Asks whether an invocation may run; as {@link HostPolicyClient.evaluateStartComponent}. */
  evaluatePerformInvocation(body: PerformInvocationBodyV1): Promise<PolicyAnswer>;
  /**
   * Sends the 0.82 request shape, cached on the whole (source, target, action); the host info
   * comes from `request.host`. As {@link HostPolicyClient.evaluateStartComponent} otherwise.
   */
  evaluateLegacy(request: LegacyRequestInput): Promise<PolicyAnswer>;
  /** A copy of the cache: cache key (`cacheKeyV1`/`cacheKeyV082` form) → entry. */
  cacheEntries(): ReadonlyMap<string, CacheEntry>;
  /** Every request id published, oldest first, including requests that failed. */
  sentRequestIds(): readonly string[];
  /**
   * The host's `request_to_key` map: request id → cache key, for the requests whose response was
   * cached. Only these ids are honoured on the changes topic.
   */
  requestKeys(): ReadonlyMap<string, string>;
  /** A snapshot of the counters. */
  stats(): HostPolicyStats;
  /** Calls `listener` after each changes-topic message is handled; returns the unsubscribe function. */
  onOverride(listener: (event: OverrideEvent) => void): () => void;
}

const subject = z
  .string()
  .min(1)
  .regex(/^[^\s*>]+$/, "expected a NATS subject without whitespace or wildcards");

const OptionsSchema = z.object({
  nc: z.custom<NatsConnection>(
    (value) =>
      typeof value === "object" &&
      value !== null &&
      typeof (value as Record<string, unknown>)["request"] === "function" &&
      typeof (value as Record<string, unknown>)["subscribe"] === "function",
    { message: "expected a NatsConnection" },
  ),
  policyTopic: subject.nullable().default(DEFAULT_POLICY_TOPIC),
  changesTopic: subject.nullable().default(DEFAULT_CHANGES_TOPIC),
  timeoutMs: z.number().int().positive().default(1000),
  host: HostInfoV1,
  lineage: z.enum(["v1", "v0.82"]).default("v1"),
  strictRequestId: z.boolean().default(false),
  clusterSeed: z.string().optional(),
  requestIds: z.custom<() => string>((value) => typeof value === "function").optional(),
});
type ResolvedOptions = z.output<typeof OptionsSchema>;

/**
 * Creates a reference wasmCloud host policy client. Throws {@link HostConfigError} when the
 * options are invalid. Call `start()` to receive overrides; evaluations work before that.
 */
export function createHostPolicyClient(options: HostPolicyClientOptions): HostPolicyClient {
  const parsed = OptionsSchema.safeParse(options);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => `${i.path.join(".") || "options"}: ${i.message}`);
    throw new HostConfigError(`invalid host policy client options: ${issues.join("; ")}`);
  }
  let signer: Signer | null = null;
  if (parsed.data.clusterSeed !== undefined) {
    try {
      signer = createSigner(parsed.data.clusterSeed, "C");
    } catch (err) {
      throw new HostConfigError(`invalid host policy client options: clusterSeed: ${(err as Error).message}`);
    }
  }
  return new HostPolicyClientImpl(parsed.data, signer);
}

type MutableStats = { -readonly [K in keyof HostPolicyStats]: HostPolicyStats[K] };

class HostPolicyClientImpl implements HostPolicyClient {
  readonly #options: ResolvedOptions;
  readonly #cache = new Map<string, CacheEntry>();
  readonly #requestKeys = new Map<string, string>();
  readonly #sent: string[] = [];
  readonly #listeners = new Set<(event: OverrideEvent) => void>();
  readonly #stats: MutableStats = {
    requests: 0,
    cacheHits: 0,
    failures: 0,
    overridesApplied: 0,
    overridesIgnored: 0,
    overridesUndecodable: 0,
    mismatchedRequestIds: 0,
  };
  #status: HostPolicyClientStatus = "starting";
  #starting: Promise<void> | null = null;
  #stopping: Promise<void> | null = null;
  #subscription: Subscription | null = null;
  #changesLoop: Promise<void> = Promise.resolve();
  /** Tail of the 0.82 lineage's cache lock: each holder runs after the previous one settles. */
  #lockTail: Promise<unknown> = Promise.resolve();

  readonly #signer: Signer | null;

  constructor(options: ResolvedOptions, signer: Signer | null) {
    this.#options = options;
    this.#signer = signer;
  }

  get status(): HostPolicyClientStatus {
    return this.#status;
  }

  start(): Promise<void> {
    if (this.#status === "stopped") return Promise.reject(new HostClientStoppedError());
    this.#starting ??= this.#subscribe();
    return this.#starting;
  }

  async #subscribe(): Promise<void> {
    const { nc, changesTopic } = this.#options;
    if (changesTopic !== null) {
      // A plain subscription, no queue group: every host receives every override.
      // A callback rather than an iterator: each host hears every override, so the per-message
      // cost is paid once per host for every override of the lattice.
      const subscription = nc.subscribe(changesTopic, {
        callback: (err, msg) => {
          if (err === null) this.#receiveChange(msg.data);
        },
      });
      this.#subscription = subscription;
      this.#changesLoop = this.#untilChangesEnd(subscription);
      // Once the server has answered a PING it has processed the SUB, so an override published
      // after start() resolves is delivered to this client.
      await nc.flush();
    }
    if (this.#status === "starting") this.#status = "ready";
  }

  stop(): Promise<void> {
    this.#status = "stopped";
    this.#stopping ??= (async () => {
      await this.#starting?.catch(() => undefined);
      const subscription = this.#subscription;
      if (subscription !== null && !subscription.isClosed()) {
        // Draining fails only when the connection is already closed, which ends the loop anyway.
        await subscription.drain().catch(() => undefined);
      }
      await this.#changesLoop;
    })();
    return this.#stopping;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }

  evaluateStartComponent(body: StartComponentBodyV1): Promise<PolicyAnswer> {
    return this.#evaluateV1({ kind: "startComponent", request: body });
  }

  evaluateStartProvider(body: StartProviderBodyV1): Promise<PolicyAnswer> {
    return this.#evaluateV1({ kind: "startProvider", request: body });
  }

  evaluatePerformInvocation(body: PerformInvocationBodyV1): Promise<PolicyAnswer> {
    return this.#evaluateV1({ kind: "performInvocation", request: body });
  }

  async evaluateLegacy(request: LegacyRequestInput): Promise<PolicyAnswer> {
    this.#assertNotStopped();
    const built = buildRequestV082(this.#nextRequestId(), request);
    return this.#evaluate(built, cacheKeyV082(built));
  }

  cacheEntries(): ReadonlyMap<string, CacheEntry> {
    return new Map(this.#cache);
  }

  sentRequestIds(): readonly string[] {
    return [...this.#sent];
  }

  requestKeys(): ReadonlyMap<string, string> {
    return new Map(this.#requestKeys);
  }

  stats(): HostPolicyStats {
    return { ...this.#stats };
  }

  onOverride(listener: (event: OverrideEvent) => void): () => void {
    // Wrapped so the same function can be registered twice and each unsubscribe removes one.
    const registered = (event: OverrideEvent) => listener(event);
    this.#listeners.add(registered);
    return () => {
      this.#listeners.delete(registered);
    };
  }

  async #evaluateV1(action: HostActionV1): Promise<PolicyAnswer> {
    this.#assertNotStopped();
    // The id is drawn before the cache lookup and simply dropped on a hit; nothing observes it.
    const built = buildRequestV1(this.#nextRequestId(), action, this.#options.host);
    return this.#evaluate(built, cacheKeyV1(built));
  }

  #nextRequestId(): string {
    return this.#options.requestIds?.() ?? newRequestId();
  }

  #evaluate(request: PolicyRequestV1 | PolicyRequestV082, cacheKey: string): Promise<PolicyAnswer> {
    return this.#options.lineage === "v0.82"
      ? this.#exclusive(() => this.#decide(request, cacheKey))
      : this.#decide(request, cacheKey);
  }

  /** The host's `evaluate_action`: cache lookup, request, decode, cache. */
  async #decide(request: PolicyRequestV1 | PolicyRequestV082, cacheKey: string): Promise<PolicyAnswer> {
    const { nc, policyTopic, timeoutMs } = this.#options;
    // Without a policy topic the host permits before it looks at its cache (`evaluate_action`).
    if (policyTopic === null) return { permitted: true, message: null, requestId: "", cached: false };
    const hit = this.#cache.get(cacheKey);
    if (hit !== undefined) {
      this.#stats.cacheHits++;
      return { ...hit, cached: true };
    }
    const { requestId } = request;
    this.#sent.push(requestId);
    this.#stats.requests++;
    let data: Uint8Array;
    try {
      const payload = encodeRequest(request);
      const reply = await nc.request(policyTopic, payload, {
        timeout: timeoutMs,
        ...(this.#signer
          ? { headers: this.#signedHeaders(request, payload, policyTopic, this.#signer) }
          : {}),
      });
      data = reply.data;
    } catch (err) {
      return this.#failRequest(requestId, err);
    }
    const decoded = decodeResponse(data);
    if (!decoded.ok) {
      return this.#deny(requestId, "undecodable", `failed to deserialize policy response: ${decoded.reason}`);
    }
    const response = decoded.response;
    if (response.requestId !== requestId) {
      this.#stats.mismatchedRequestIds++;
      if (this.#options.strictRequestId) {
        return this.#deny(
          requestId,
          "mismatched-request-id",
          `policy response carries requestId ${JSON.stringify(response.requestId)}, expected ${JSON.stringify(requestId)}`,
        );
      }
    }
    // The host stores the response as received and records `request_to_key` only now: a request
    // that failed is unknown to later overrides (host crate `policy/nats.rs`, `evaluate_action`).
    const entry: CacheEntry = {
      permitted: response.permitted,
      message: response.message,
      requestId: response.requestId,
    };
    this.#cache.set(cacheKey, entry);
    this.#requestKeys.set(requestId, cacheKey);
    return { ...entry, cached: false };
  }

  /** The header carrying the request's invocation token: from this host, to the policy topic, over these bytes. */
  #signedHeaders(
    request: PolicyRequestV1 | PolicyRequestV082,
    payload: Uint8Array,
    policyTopic: string,
    signer: Signer,
  ) {
    const about =
      "action" in request
        ? (({ host, kind }) => ({ ...host, kind }))(normalizeV082(request))
        : { publicKey: request.host.publicKey, lattice: request.host.lattice, kind: request.kind };
    const h = headers();
    h.set(
      POLICY_INVOCATION_HEADER,
      signPolicyRequest(
        {
          hostKey: about.publicKey,
          lattice: about.lattice,
          policyTopic,
          kind: about.kind,
          request: payload,
        },
        signer,
      ),
    );
    return h;
  }

  #failRequest(requestId: string, err: unknown): PolicyAnswer {
    const { policyTopic, timeoutMs } = this.#options;
    if (err instanceof TimeoutError || (err instanceof Error && err.name === "TimeoutError")) {
      return this.#deny(requestId, "timeout", `policy request timed out after ${timeoutMs} ms`);
    }
    if (err instanceof RequestError && err.isNoResponders()) {
      return this.#deny(requestId, "no-responders", `no responders on policy topic ${policyTopic}`);
    }
    const detail = err instanceof Error ? err.message : String(err);
    return this.#deny(requestId, "request-failed", `policy request failed: ${detail}`);
  }

  #deny(requestId: string, failure: PolicyFailure, message: string): PolicyAnswer {
    this.#stats.failures++;
    return { permitted: false, message, requestId, cached: false, failure };
  }

  /** Handles one changes-topic message in arrival order, like the host's `for_each` over the subscription. */
  #receiveChange(data: Uint8Array): void {
    if (this.#options.lineage === "v0.82") {
      void this.#exclusive(async () => this.#applyChange(data));
    } else {
      this.#applyChange(data);
    }
  }

  /** Resolves when the subscription ends; one that ends before stop() (permissions, connection closed) degrades the client. */
  async #untilChangesEnd(subscription: Subscription): Promise<void> {
    await subscription.closed;
    await this.#lockTail;
    if (this.#status !== "stopped") this.#status = "degraded";
  }

  /** The host's `override_decision`: overwrite the entry of a known request id, else ignore. */
  #applyChange(data: Uint8Array): void {
    const decoded = decodeResponse(data);
    if (!decoded.ok) {
      this.#stats.overridesUndecodable++;
      this.#emit({ outcome: "undecodable", reason: decoded.reason });
      return;
    }
    const { requestId, permitted, message } = decoded.response;
    const cacheKey = this.#requestKeys.get(requestId);
    if (cacheKey === undefined) {
      this.#stats.overridesIgnored++;
      this.#emit({ outcome: "unknown-request-id", requestId, permitted, message });
      return;
    }
    const previous = this.#cache.get(cacheKey) ?? null;
    this.#cache.set(cacheKey, { permitted, message, requestId });
    this.#stats.overridesApplied++;
    this.#emit({ outcome: "applied", requestId, cacheKey, permitted, message, previous });
  }

  #emit(event: OverrideEvent): void {
    for (const listener of [...this.#listeners]) {
      try {
        listener(event);
      } catch {
        // A failing test listener must not stop the host from handling later overrides.
      }
    }
  }

  /** Runs `task` holding the 0.82 cache lock (a `RwLock` write guard held across the request). */
  #exclusive<T>(task: () => Promise<T>): Promise<T> {
    const run = this.#lockTail.then(task);
    this.#lockTail = run.catch(() => undefined);
    return run;
  }

  #assertNotStopped(): void {
    if (this.#status === "stopped") throw new HostClientStoppedError();
  }
}
