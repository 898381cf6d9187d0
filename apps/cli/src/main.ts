#!/usr/bin/env node
import { ArbiterError, ErrorCode } from "@arbiter/protocol";
import { type Command, CommanderError } from "commander";
import { explainNatsFailure } from "./context.js";
import { ExitCode, reportError } from "./output.js";
import { createProgram } from "./program.js";

const json = process.argv.includes("--json");

// A reader that goes away (`arbiter decisions tail | head`) ends the command as SIGTERM does (a
// follower drains and exits 0, `up` stops what it started), not with an unhandled EPIPE.
let readerGone = false;
process.stdout.on("error", (err: NodeJS.ErrnoException) => {
  if (err.code !== "EPIPE") throw err;
  if (readerGone) return;
  readerGone = true;
  process.kill(process.pid, "SIGTERM");
});

const program = createProgram();

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
    process.exitCode = reportError(explainNatsFailure(err), json);
  }
}
