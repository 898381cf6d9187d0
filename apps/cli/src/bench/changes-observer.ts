// One observer of the changes topic for the convergence benchmark, in its own process so that the
// simulated hosts' work does not delay it: it counts the overrides of each phase and notes when
// the expected one arrived, in milliseconds since the epoch (comparable across processes).
//   node changes-observer.js --servers URL --control SUBJECT [--topic T]
// Control requests (JSON): {"outcomes": [[requestId, permitted, message], …]} adds to the expected
// outcomes; {"expect": N, "check": true} starts a phase (checking each override against them when
// `check`, then forgetting them when the next phase starts without it); {} answers the phase's figures.
import { performance } from "node:perf_hooks";
import { parseArgs } from "node:util";
import { connect } from "@nats-io/transport-node";
import { z } from "zod";

const { values } = parseArgs({
  options: {
    servers: { type: "string" },
    control: { type: "string" },
    topic: { type: "string", default: "wasmcloud.policy.changes" },
  },
});
if (!values.servers || !values.control) {
  process.stderr.write("changes-observer: --servers URL and --control SUBJECT are required\n");
  process.exit(2);
}

const Control = z.object({
  expect: z.number().int().nonnegative().optional(),
  check: z.boolean().optional(),
  outcomes: z.array(z.tuple([z.string(), z.boolean(), z.string()])).optional(),
});
const Override = z.object({
  requestId: z.string(),
  request_id: z.string(),
  permitted: z.boolean(),
  message: z.string(),
});
const epochMs = () => performance.timeOrigin + performance.now();
const newPhase = (expected: number) => ({
  expected,
  count: 0,
  firstAt: null as number | null,
  reachedAt: null as number | null,
  /** Overrides that matched an expected outcome (checked phases only). */
  matched: 0,
  /** Overrides that did not: unparsable, unexpected id, wrong outcome, or a second one for an id. */
  wrong: 0,
  wrongSamples: [] as string[],
});
let phase = newPhase(0);
/** requestId → "permitted|message" expected, for checked phases. */
let outcomes = new Map<string, string>();
let checking = false;
const seen = new Set<string>();

function check(data: Uint8Array): void {
  let body: unknown = null;
  try {
    body = JSON.parse(new TextDecoder().decode(data));
  } catch {
    // Counted wrong below.
  }
  const override = Override.safeParse(body);
  const id = override.success ? override.data.requestId : "";
  const expected = outcomes.get(id);
  const ok =
    override.success &&
    override.data.request_id === id &&
    expected === `${override.data.permitted}|${override.data.message}` &&
    !seen.has(id);
  if (ok) {
    seen.add(id);
    phase.matched++;
    return;
  }
  phase.wrong++;
  if (phase.wrongSamples.length < 5) phase.wrongSamples.push(new TextDecoder().decode(data).slice(0, 300));
}

const nc = await connect({ servers: values.servers.split(","), name: "arbiter-bench-changes-observer" });
nc.subscribe(values.topic, {
  callback: (err, msg) => {
    if (err) {
      process.stderr.write(`changes-observer: subscription failed: ${err.message}\n`);
      process.exitCode = 1;
      return;
    }
    const at = epochMs();
    phase.count++;
    phase.firstAt ??= at;
    if (phase.count === phase.expected) phase.reachedAt = at;
    if (checking) check(msg.data);
  },
});
nc.subscribe(values.control, {
  callback: (_err, msg) => {
    let body: unknown = null;
    try {
      body = JSON.parse(msg.string());
    } catch {
      // Answered as a report request below.
    }
    const control = Control.safeParse(body);
    if (control.success) {
      for (const [id, permitted, message] of control.data.outcomes ?? []) {
        outcomes.set(id, `${permitted}|${message}`);
      }
      if (control.data.expect !== undefined) {
        phase = newPhase(control.data.expect);
        checking = control.data.check === true;
        seen.clear();
        if (!checking) outcomes = new Map();
      }
    }
    msg.respond(JSON.stringify(phase));
  },
});
await nc.flush();
process.stdout.write("ready\n");

let stopping = false;
const stop = () => {
  if (stopping) process.exit(130);
  stopping = true;
  nc.drain().then(
    () => process.exit(),
    () => process.exit(1),
  );
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
