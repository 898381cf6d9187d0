#!/usr/bin/env node
import { ArbiterError, ErrorCode } from "@arbiter/protocol";
import { Command, CommanderError } from "commander";
import { auditCommand } from "./commands/audit.js";
import { benchCommand } from "./commands/bench.js";
import { decisionsCommand } from "./commands/decisions.js";
import { revocationsCommand } from "./commands/revocations.js";
import { rulesCommand } from "./commands/rules.js";
import { trustCommand } from "./commands/trust.js";
import { upCommand } from "./commands/up.js";
import { workerCommand } from "./commands/worker.js";
import { workersCommand } from "./commands/workers.js";
import { resolveLogSettings } from "./lifecycle.js";
import { ExitCode, reportError } from "./output.js";

const json = process.argv.includes("--json");

const program = new Command("arbiter")
  .description("Arbiter: an event-sourced, replicated policy service for wasmCloud lattices")
  .version("0.1.0")
  .showHelpAfterError()
  .addCommand(upCommand())
  .addCommand(workerCommand())
  .addCommand(workersCommand())
  .addCommand(rulesCommand())
  .addCommand(decisionsCommand())
  .addCommand(revocationsCommand())
  .addCommand(auditCommand())
  .addCommand(benchCommand())
  .addCommand(trustCommand())
  // A bad ARBITER_LOG_LEVEL or ARBITER_LOG_FORMAT fails every command the same way, before it starts.
  .hook("preAction", () => void resolveLogSettings());

/**
 * Usage errors in any subcommand come back here as a CommanderError instead of exiting inside
 * commander; with `--json` commander prints nothing and the error is reported as JSON below.
 */
function configureEverywhere(command: Command): void {
  command.exitOverride();
  if (json) command.configureOutput({ writeErr: () => undefined });
  for (const sub of command.commands) configureEverywhere(sub);
}
configureEverywhere(program);

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) {
    if (err.exitCode === 0) process.exitCode = ExitCode.Ok;
    else if (json) {
      const message = err.message.replace(/^error: /, "");
      process.exitCode = reportError(new ArbiterError(ErrorCode.InvalidUsage, message), true);
    } else process.exitCode = ExitCode.InvalidInput;
  } else {
    process.exitCode = reportError(err, json);
  }
}
