import type { Logger } from "pino";
import { RateLimitedWarning } from "./rate-limited-warning.js";

/**
 * A host key that can be one subject token: letters, digits, `-` and `_`, 1 to 128 of them (real
 * keys are 56 upper-case base32 characters). The key comes from the host's request, so anything
 * else (a wildcard, a dot, a space, a control character, nothing) would make a publish on another
 * subject, on many, or none at all.
 */
const HOST_TOKEN = /^[A-Za-z0-9_-]{1,128}$/;

/** True when `host` may stand as the last token of a per-host changes subject. */
export function isHostSubjectToken(host: string): boolean {
  return HOST_TOKEN.test(host);
}

/** Hosts whose subject is kept (beyond, the map starts again). */
const SUBJECTS_KEPT = 65_536;

/** Longest part of an unusable host key quoted in the log. */
const QUOTED_KEY_CHARS = 80;

/**
 * Chooses the subject of each override: the shared changes topic, or with `perHost` the host's own
 * `<changesTopic>.<host key>`, which a host started with `--policy-changes-topic` set so alone
 * hears. An override for a host whose key is not a valid subject token goes on the shared topic
 * (the only one such a host could listen on), counted and logged at most once a second.
 */
export class ChangesSubjects {
  /** Whether overrides go on per-host subjects. */
  readonly perHost: boolean;
  readonly #topic: string;
  readonly #warning: RateLimitedWarning | undefined;
  #fallbacks = 0;
  #untaken = 0;
  /** Subjects of the hosts seen, so that a scan checks and builds each host's once. */
  readonly #subjects = new Map<string, string>();

  constructor(options: { readonly changesTopic: string; readonly perHost: boolean; readonly log?: Logger }) {
    this.perHost = options.perHost;
    this.#topic = options.changesTopic;
    this.#warning =
      options.log === undefined
        ? undefined
        : new RateLimitedWarning(
            options.log,
            "overrides for hosts whose key is not a subject token went on the shared changes topic",
            "sharedFallback",
          );
  }

  /** The subject of an override for a decision of host `host`. */
  subjectFor(host: string): string {
    if (!this.perHost) return this.#topic;
    const known = this.#subjects.get(host);
    if (known !== undefined) return known;
    let subject: string;
    if (isHostSubjectToken(host)) subject = `${this.#topic}.${host}`;
    else {
      subject = this.#topic;
      this.#fallbacks++;
      this.#untaken++;
      this.#warning?.count(1, {
        host: JSON.stringify(host.slice(0, QUOTED_KEY_CHARS)),
        hostLength: host.length,
      });
      // Not remembered: every override of such a host is counted.
      return subject;
    }
    if (this.#subjects.size >= SUBJECTS_KEPT) this.#subjects.clear();
    this.#subjects.set(host, subject);
    return subject;
  }

  /** Overrides sent on the shared topic because their host's key is not a subject token, since start. */
  get sharedFallback(): number {
    return this.#fallbacks;
  }

  /** The overrides sent on the shared topic for unusable keys since the previous call (for a log line). */
  takeSharedFallback(): number {
    const n = this.#untaken;
    this.#untaken = 0;
    return n;
  }

  /** Logs what the rate-limited warning still holds (for `stop()`). */
  flush(): void {
    this.#warning?.flush();
  }
}
