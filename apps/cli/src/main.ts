#!/usr/bin/env node
import { Command, CommanderError } from "commander";
import { benchCommand } from "./commands/bench.js";
import { decisionsCommand } from "./commands/decisions.js";
import { rulesCommand } from "./commands/rules.js";
import { trustCommand } from "./commands/trust.js";
import { upCommand } from "./commands/up.js";
import { workerCommand } from "./commands/worker.js";
import { ExitCode, reportError } from "./output.js";

const program = new Command("arbiter")
  .description("Arbiter: an event-sourced, replicated policy service for wasmCloud lattices")
  .version("0.1.0")
  .showHelpAfterError()
  .exitOverride()
  .addCommand(upCommand())
  .addCommand(workerCommand())
  .addCommand(rulesCommand())
  .addCommand(decisionsCommand())
  .addCommand(benchCommand())
  .addCommand(trustCommand());

/** Usage errors in any subcommand come back here as a CommanderError instead of exiting inside commander. */
function exitOverrideEverywhere(command: Command): void {
  command.exitOverride();
  for (const sub of command.commands) exitOverrideEverywhere(sub);
}
exitOverrideEverywhere(program);

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) {
    // Help and version exit 0; usage errors were already printed by commander.
    process.exitCode = err.exitCode === 0 ? ExitCode.Ok : ExitCode.InvalidInput;
  } else {
    process.exitCode = reportError(err, process.argv.includes("--json"));
  }
}
