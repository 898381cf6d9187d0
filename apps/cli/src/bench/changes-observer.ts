// One observer of the changes topic for the convergence benchmark, in its own process so that the
// simulated hosts' work does not delay it: it counts the overrides of each phase and notes when
// the expected one arrived, in milliseconds since the epoch (comparable across processes).
//   node changes-observer.js --servers URL --control SUBJECT [--topic T]
// Control requests (JSON): {"expect": N} starts a phase; {} answers the phase's figures.
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

const Control = z.object({ expect: z.number().int().nonnegative().optional() });
const epochMs = () => performance.timeOrigin + performance.now();
let phase = { expected: 0, count: 0, firstAt: null as number | null, reachedAt: null as number | null };

const nc = await connect({ servers: values.servers.split(","), name: "arbiter-bench-changes-observer" });
nc.subscribe(values.topic, {
  callback: (err) => {
    if (err) {
      process.stderr.write(`changes-observer: subscription failed: ${err.message}\n`);
      process.exitCode = 1;
      return;
    }
    const at = epochMs();
    phase.count++;
    phase.firstAt ??= at;
    if (phase.count === phase.expected) phase.reachedAt = at;
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
    if (control.success && control.data.expect !== undefined) {
      phase = { expected: control.data.expect, count: 0, firstAt: null, reachedAt: null };
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
