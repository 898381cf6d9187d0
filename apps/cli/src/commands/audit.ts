import { Command } from "commander";
import { addReplayCommands } from "./audit-replay.js";
import { connectionOptions } from "./rules.js";
import { addVerifyCommand } from "./trail.js";

/** `arbiter audit verify|replay|whatif`. */
export function auditCommand(): Command {
  const audit = new Command("audit").description("check the records after the fact");
  addVerifyCommand(audit, connectionOptions);
  addReplayCommands(audit);
  return audit;
}
