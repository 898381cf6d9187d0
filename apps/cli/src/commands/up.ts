import { existsSync } from "node:fs";
import { createServer } from "node:net";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import {
  findNatsServer,
  type NatsCluster,
  type NatsServerProcess,
  startNatsCluster,
  startNatsServer,
} from "@arbiter/embedded-nats";
import { ArbiterError, DEFAULT_CHANGES_TOPIC, DEFAULT_POLICY_TOPIC, ErrorCode } from "@arbiter/protocol";
import { createRulesAdmin, openJetStreamStore } from "@arbiter/store";
import { createSigner } from "@arbiter/trust";
import { createWorker, type Worker } from "@arbiter/worker";
import type { NatsConnection } from "@nats-io/nats-core";
import { Command } from "commander";
import {
  arbiterHome,
  connectNats,
  localAdminSeed,
  readLocalState,
  resolveAdminKeys,
  writeLocalState,
} from "../context.js";
import { createLogger, untilSignal } from "../lifecycle.js";
import { emit } from "../output.js";
import { readRulesFile } from "./rules.js";

interface UpFlags {
  workers: string;
  nodes: string;
  rules?: string;
  port?: string;
  json?: boolean;
}

const EXAMPLE_RULES = fileURLToPath(new URL("../../../../deploy/rules/example.yaml", import.meta.url));

/** `arbiter up`: embedded NATS with JetStream, example rules and N workers, until Ctrl-C. */
export function upCommand(): Command {
  return new Command("up")
    .description(
      "run a local Arbiter: embedded NATS (JetStream), decision workers and rules; Ctrl-C stops all",
    )
    .option("--workers <n>", "decision workers to run", "3")
    .option("--nodes <n>", "NATS servers: 1, or 3 for a JetStream cluster with R3 streams", "1")
    .option("--rules <file>", "rules to apply at start (default: the example rules)")
    .option("--port <n>", "client port of the (first) NATS server (default 4222, or a free one if taken)")
    .option("--json", "print the started cluster as JSON")
    .action(async (flags: UpFlags) => {
      const log = createLogger("arbiter-up");
      const workerCount = Number(flags.workers);
      const nodes = Number(flags.nodes);
      if (!Number.isInteger(workerCount) || workerCount < 1 || workerCount > 64) {
        throw new ArbiterError(
          ErrorCode.InvalidConfig,
          `--workers ${JSON.stringify(flags.workers)}: expected 1 to 64`,
        );
      }
      if (nodes !== 1 && nodes !== 3)
        throw new ArbiterError(
          ErrorCode.InvalidConfig,
          `--nodes ${JSON.stringify(flags.nodes)}: expected 1 or 3`,
        );
      const rulesFile = flags.rules ?? EXAMPLE_RULES;
      if (!existsSync(rulesFile) && rulesFile !== "-") {
        throw new ArbiterError(
          ErrorCode.InvalidConfig,
          `rules file ${rulesFile} not found; pass --rules FILE`,
        );
      }
      const document = readRulesFile(rulesFile);
      const running = readLocalState();
      if (running) {
        throw new ArbiterError(
          ErrorCode.InvalidConfig,
          `arbiter up is already running for ${arbiterHome()} (pid ${running.pid}, NATS at ${running.url}); stop it first, or set ARBITER_HOME to another folder`,
        );
      }
      await findNatsServer({ log: (line) => log.info(line) });

      const home = arbiterHome();
      const replicas = nodes === 3 ? 3 : 1;
      let nats: NatsServerProcess | NatsCluster;
      if (nodes === 1) {
        nats = await startNatsServer({
          port: await choosePort(flags.port),
          storeDir: join(home, "nats"),
          detached: true,
        });
      } else {
        nats = await startNatsCluster({ nodes: 3, logDir: join(home, "logs"), detached: true });
      }
      const urls: string[] = "servers" in nats ? [...nats.urls] : [nats.url];

      const connections: NatsConnection[] = [];
      const workers: Worker[] = [];
      const stopAll = async () => {
        await Promise.allSettled(workers.map((w) => w.stop()));
        await Promise.allSettled(connections.map((c) => c.drain()));
        await nats.stop();
        writeLocalState(null);
      };
      try {
        const signer = createSigner(process.env["ARBITER_ADMIN_SEED"] || localAdminSeed(true)!, "O");
        const control = await connectNats(urls, "arbiter-up");
        connections.push(control);
        const store = await openJetStreamStore(control, { replicas });
        const admin = createRulesAdmin({ store, signer });
        const current = await admin.stateAt();
        let revision = current.revision;
        if (JSON.stringify(current.document) !== JSON.stringify(document)) {
          const shown = relative(process.cwd(), rulesFile) || rulesFile;
          revision = (await admin.apply(document, { reason: `arbiter up --rules ${shown}` })).revision;
        }
        const adminKeys = resolveAdminKeys(undefined, signer);
        for (let i = 1; i <= workerCount; i++) {
          const nc = await connectNats(urls, `arbiter-worker-local-${i}`, true);
          connections.push(nc);
          const storeNc = await connectNats(urls, `arbiter-worker-local-${i}-store`, true);
          connections.push(storeNc);
          const worker = createWorker({
            nc,
            storeNc,
            logger: log,
            config: { id: `local-${i}`, adminKeys, replicas },
          });
          await worker.start();
          workers.push(worker);
        }
        writeLocalState({
          url: urls.join(","),
          pid: process.pid,
          adminPublicKey: signer.publicKey,
          startedAt: new Date().toISOString(),
        });
        const shownRules = relative(process.cwd(), rulesFile) || rulesFile;
        emit(
          flags.json === true,
          {
            url: urls.join(","),
            servers: urls,
            nodes,
            workers: workers.map((w) => w.id),
            revision,
            rules: rulesFile,
            adminPublicKey: signer.publicKey,
            dataDir: home,
            policyTopic: DEFAULT_POLICY_TOPIC,
            changesTopic: DEFAULT_CHANGES_TOPIC,
          },
          () =>
            [
              `NATS ${urls.join(",")}`,
              `Arbiter is up: ${workerCount} worker${workerCount === 1 ? "" : "s"} answering on ${DEFAULT_POLICY_TOPIC} (queue group "arbiter"), ${nodes === 3 ? "3-node JetStream cluster, R3 streams" : "1 NATS server"}.`,
              `  rules       revision ${revision} from ${shownRules}`,
              `  admin key   ${signer.publicKey} (seed in ${relative(process.cwd(), localAdminSeedPath(home)) || localAdminSeedPath(home)})`,
              "Point wasmCloud hosts at it:",
              `  WASMCLOUD_POLICY_TOPIC=${DEFAULT_POLICY_TOPIC} WASMCLOUD_POLICY_CHANGES_TOPIC=${DEFAULT_CHANGES_TOPIC} (NATS at the URL above)`,
              "From another terminal in this folder: arbiter rules show | arbiter rules apply FILE | arbiter decisions tail",
              "Ctrl-C stops everything.",
            ].join("\n"),
        );
      } catch (err) {
        await stopAll();
        throw err;
      }
      await untilSignal(stopAll, log);
    });
}

function localAdminSeedPath(home: string): string {
  return join(home, "admin.seed");
}

/** The requested port, or 4222 when free, or a free port chosen by the server (-1). */
async function choosePort(flag: string | undefined): Promise<number> {
  if (flag !== undefined) {
    const port = Number(flag);
    if (!Number.isInteger(port) || port < 1 || port > 65535) {
      throw new ArbiterError(
        ErrorCode.InvalidConfig,
        `--port ${JSON.stringify(flag)}: expected a port number`,
      );
    }
    return port;
  }
  return (await isFree(4222)) ? 4222 : -1;
}

function isFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = createServer();
    probe.once("error", () => resolve(false));
    probe.listen(port, "127.0.0.1", () => probe.close(() => resolve(true)));
  });
}
