import { Command } from "commander";
import { connectionOptions } from "./rules.js";
import { addVerifyCommand } from "./trail.js";

/** `arbiter audit verify`. */
export function auditCommand(): Command {
  const audit = new Command("audit").description("check the records after the fact");
  addVerifyCommand(audit, connectionOptions);
  return audit;
}
