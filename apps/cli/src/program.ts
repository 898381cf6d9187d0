import { Command } from "commander";
import { auditCommand } from "./commands/audit.js";
import { benchCommand } from "./commands/bench.js";
import { decisionsCommand } from "./commands/decisions.js";
import { natsCommand } from "./commands/nats.js";
import { revocationsCommand } from "./commands/revocations.js";
import { rulesCommand } from "./commands/rules.js";
import { statusCommand } from "./commands/status.js";
import { trustCommand } from "./commands/trust.js";
import { upCommand } from "./commands/up.js";
import { workerCommand } from "./commands/worker.js";
import { workersCommand } from "./commands/workers.js";
import { resolveLogSettings } from "./lifecycle.js";

/** The whole `arbiter` command tree, not yet parsed; building it has no effect beyond the object. */
export function createProgram(): Command {
  return (
    new Command("arbiter")
      .description("Arbiter: an event-sourced, replicated policy service for wasmCloud lattices")
      .version("0.1.0")
      .showHelpAfterError()
      .addCommand(upCommand())
      .addCommand(workerCommand())
      .addCommand(workersCommand())
      .addCommand(statusCommand())
      .addCommand(rulesCommand())
      .addCommand(decisionsCommand())
      .addCommand(revocationsCommand())
      .addCommand(auditCommand())
      .addCommand(benchCommand())
      .addCommand(trustCommand())
      .addCommand(natsCommand())
      // A bad ARBITER_LOG_LEVEL or ARBITER_LOG_FORMAT fails every command the same way, before it starts.
      .hook("preAction", () => void resolveLogSettings())
  );
}
