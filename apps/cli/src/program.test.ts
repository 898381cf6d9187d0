import { readFileSync } from "node:fs";
import type { Command } from "commander";
import { describe, expect, it } from "vitest";
import { createProgram } from "./program.js";

/** Every command that runs something (no subcommands), by its path under `arbiter`. */
function leaves(command: Command, path: string[] = []): Map<string, Command> {
  const out = new Map<string, Command>();
  for (const sub of command.commands) {
    const subPath = [...path, sub.name()];
    if (sub.commands.length === 0) out.set(subPath.join(" "), sub);
    else for (const [name, leaf] of leaves(sub, subPath)) out.set(name, leaf);
  }
  return out;
}

/** The command paths the README's "Command line" block documents (`arbiter rules apply FILE …` → `rules apply`). */
function documentedCommands(paths: ReadonlySet<string>): Set<string> {
  const readme = readFileSync(new URL("../../../README.md", import.meta.url), "utf8");
  const found = new Set<string>();
  for (const line of readme.split("\n")) {
    const words = /^arbiter ((?:[a-z][a-z-]* ?)+)/.exec(line)?.[1]?.trim().split(" ") ?? [];
    for (let n = words.length; n > 0; n--) {
      const path = words.slice(0, n).join(" ");
      if (paths.has(path)) {
        found.add(path);
        break;
      }
    }
  }
  return found;
}

describe("the arbiter command tree", () => {
  const program = createProgram();
  const commands = leaves(program);

  it("gives every command --help and --json", () => {
    expect(commands.size).toBeGreaterThan(10);
    for (const [path, command] of commands) {
      const flags = command.options.map((o) => o.long);
      expect(flags, path).toContain("--json");
      expect(command.helpInformation(), path).toMatch(/--json/);
      expect(command.helpInformation(), path).toMatch(/-h, --help/);
      expect(command.description(), path).not.toBe("");
    }
  });

  it("says, on every command that connects, where it connects by default and how it signs in", () => {
    const connecting = [...commands].filter(([, c]) => c.options.some((o) => o.long === "--servers"));
    expect(connecting.length).toBeGreaterThan(10);
    for (const [path, command] of connecting) {
      const help = command.helpInformation().replace(/\s+/g, " ");
      expect(help, path).toContain(
        "default: the `arbiter up` running in this folder, else nats://127.0.0.1:4222",
      );
      expect(help, path).toContain("NATS_USER and NATS_PASSWORD, or NATS_CREDS");
    }
  });

  it("names in --help the keys and folders the long-running commands use, and what --wait exits with", () => {
    const help = (path: string) => commands.get(path)?.helpInformation().replace(/\s+/g, " ") ?? "";
    expect(help("worker")).toContain("ARBITER_WORKER_SEED");
    expect(help("up")).toContain("ARBITER_HOME (default .arbiter)");
    for (const path of ["rules apply", "rules rollback"]) expect(help(path), path).toMatch(/exit 5 when/);
    expect(program.helpInformation()).not.toContain("ARBITER_WORKER_SEED");
    for (const path of ["up", "rules apply", "rules rollback", "workers enroll", "workers remove"]) {
      expect(help(path).match(/already past it are deleted at once/g), path).toHaveLength(2);
    }
  });

  it("has its command groups list what they hold in their help", () => {
    for (const group of program.commands.filter((c) => c.commands.length > 0)) {
      for (const sub of group.commands) expect(group.helpInformation(), group.name()).toContain(sub.name());
    }
  });

  it("is the command list the README documents, no more and no less", () => {
    const paths = new Set(commands.keys());
    expect([...documentedCommands(paths)].sort()).toEqual([...paths].sort());
  });
});
