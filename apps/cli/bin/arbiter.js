#!/usr/bin/env node
// The installed `arbiter` command. npm links it at install time, before a build has written
// dist/main.js, so it is a file of its own that loads the built CLI and says what to do when
// there is none yet.
try {
  await import("../dist/main.js");
} catch (err) {
  if (err?.code === "ERR_MODULE_NOT_FOUND" && String(err.message).includes("dist/main.js")) {
    process.stderr.write("arbiter: the CLI is not built yet; run `npm run build` in the Arbiter folder\n");
    process.exit(1);
  }
  throw err;
}
