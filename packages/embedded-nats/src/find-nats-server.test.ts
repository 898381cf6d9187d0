import { chmod, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ErrorCode, isArbiterError } from "@arbiter/protocol";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { isNatsServerNotFoundError, NatsServerNotFoundError } from "./errors.js";
import { findNatsServer, locateNatsServer, locateOrInstallNatsServer } from "./find-nats-server.js";

describe("findNatsServer", () => {
  let dir: string;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "arbiter-find-nats-"));
  });

  afterEach(async () => {
    vi.unstubAllEnvs();
    await rm(dir, { recursive: true, force: true });
  });

  async function fakeBinary(name: string, mode: number): Promise<string> {
    const path = join(dir, name);
    await writeFile(path, "#!/bin/sh\necho 'nats-server: v0.0.0'\n");
    await chmod(path, mode);
    return path;
  }

  it("rejects with the named error when NATS_SERVER_BIN is not executable", async () => {
    vi.stubEnv("NATS_SERVER_BIN", await fakeBinary("nats-server", 0o644));

    const error = await findNatsServer({ install: false }).catch((err: unknown) => err);

    expect(isNatsServerNotFoundError(error)).toBe(true);
    expect(error).toBeInstanceOf(NatsServerNotFoundError);
    expect(isArbiterError(error, ErrorCode.NatsServerNotFound)).toBe(true);
    expect(error).toMatchObject({ name: "NatsServerNotFoundError", code: "NATS_SERVER_NOT_FOUND" });
    expect((error as Error).message).toMatch(/NATS_SERVER_BIN/);
    expect((error as Error).message).toMatch(/apt-get install -y nats-server/);
  });

  it("rejects when NATS_SERVER_BIN names a directory or a missing file", async () => {
    vi.stubEnv("NATS_SERVER_BIN", dir);
    await expect(findNatsServer({ install: false })).rejects.toThrow(NatsServerNotFoundError);
    vi.stubEnv("NATS_SERVER_BIN", join(dir, "missing"));
    await expect(findNatsServer({ install: false })).rejects.toThrow(NatsServerNotFoundError);
  });

  it("prefers an executable NATS_SERVER_BIN, resolved to an absolute path", async () => {
    const binary = await fakeBinary("my-nats-server", 0o755);
    vi.stubEnv("NATS_SERVER_BIN", binary);

    expect(await findNatsServer()).toBe(binary);
  });
});

describe("locateNatsServer", () => {
  let dir: string;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "arbiter-locate-nats-"));
  });

  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("searches PATH before the fallback locations", async () => {
    const onPath = join(dir, "nats-server");
    await writeFile(onPath, "#!/bin/sh\n");
    await chmod(onPath, 0o755);

    expect(await locateNatsServer({ PATH: `/nonexistent:${dir}` }, ["/elsewhere/nats-server"])).toBe(onPath);
  });

  it("skips non-executable candidates and answers undefined when nothing is found", async () => {
    const notExecutable = join(dir, "nats-server");
    await writeFile(notExecutable, "#!/bin/sh\n");

    expect(await locateNatsServer({ PATH: dir }, [join(dir, "missing")])).toBeUndefined();
  });
});

describe("locateOrInstallNatsServer", () => {
  let dir: string;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "arbiter-install-nats-"));
  });

  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("rejects with the install hint when nothing is found and installing is off", async () => {
    const error = await locateOrInstallNatsServer({ install: false }, { PATH: dir }, []).catch(
      (err: unknown) => err,
    );

    expect(isNatsServerNotFoundError(error)).toBe(true);
    expect((error as Error).message).toBe(
      "nats-server was not found on PATH or in NATS_SERVER_BIN. Install it with `apt-get install -y nats-server` " +
        "(Debian/Ubuntu), or download it from https://github.com/nats-io/nats-server/releases and set " +
        "NATS_SERVER_BIN=/path/to/nats-server.",
    );
  });

  it.runIf(process.getuid?.() === 0)(
    "as root runs apt-get update and install, then looks again",
    async () => {
      // A fake apt-get that "installs" an executable nats-server next to itself.
      const aptGet = join(dir, "apt-get");
      await writeFile(
        aptGet,
        [
          "#!/bin/sh",
          "PATH=/usr/bin:/bin", // the test's PATH holds only this directory
          'echo "apt-get $*"',
          'target="$(dirname "$0")/nats-server"',
          'if [ "$1" = install ]; then echo "#!/bin/sh" > "$target"; chmod 755 "$target"; fi',
          "",
        ].join("\n"),
      );
      await chmod(aptGet, 0o755);
      const lines: string[] = [];

      const found = await locateOrInstallNatsServer({ log: (line) => lines.push(line) }, { PATH: dir }, []);

      expect(found).toBe(join(dir, "nats-server"));
      expect(lines).toEqual(["apt-get update", "apt-get install -y nats-server"]);
    },
  );
});
