// The baseline of `arbiter bench`: a bare NATS responder in its own process, in the same queue
// group on the same policy topic as a worker. It parses each request (as a worker must) and
// answers permitted, with no rules, no signature and no decision log: what NATS and Node cost alone.
//   node echo-responder.js --servers URL [--topic T] [--queue Q]
import { parseArgs } from "node:util";
import { connect } from "@nats-io/transport-node";

const { values } = parseArgs({
  options: {
    servers: { type: "string" },
    topic: { type: "string", default: "wasmcloud.policy" },
    queue: { type: "string", default: "arbiter" },
  },
});
if (!values.servers) {
  process.stderr.write("echo-responder: --servers URL is required\n");
  process.exit(2);
}

const nc = await connect({ servers: values.servers.split(","), name: "arbiter-bench-echo" });
nc.subscribe(values.topic, {
  queue: values.queue,
  callback: (err, msg) => {
    if (err) {
      process.stderr.write(`echo-responder: subscription failed: ${err.message}\n`);
      process.exitCode = 1;
      return;
    }
    let requestId: unknown = null;
    try {
      requestId = (JSON.parse(msg.string()) as { requestId?: unknown }).requestId ?? null;
    } catch {
      // Undecodable: answered with a null id, which the benchmark counts as a mismatch.
    }
    msg.respond(Buffer.from(JSON.stringify({ requestId, permitted: true, message: "echo" })));
  },
});
await nc.flush();

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
