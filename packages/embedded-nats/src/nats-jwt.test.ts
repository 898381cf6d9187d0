import { decodeJwt, isDecodedJwt, verifyJwtSignature } from "@arbiter/trust";
import { describe, expect, it } from "vitest";
import { createOperatorSetup, natsJwtId, renderCredsFile, renderOperatorConfig } from "./nats-jwt.js";
import { rolePermissions } from "./permissions.js";

function decoded(token: string) {
  const jwt = decodeJwt(token);
  if (!isDecodedJwt(jwt)) throw new Error(jwt.detail);
  return jwt;
}

describe("NATS JWT v2 claims", () => {
  it("computes the jti as nats-io/jwt does: base32 of SHA-512/256 over the standard claims", () => {
    // Expected value computed apart, with Python's hashlib.sha512_256 and base64.b32encode.
    expect(natsJwtId({ iat: 1700000000, iss: "OABC", name: "host", sub: "UXYZ" })).toBe(
      "ECMOPYPHN7WFPAYPIJ2SFN2DAGTQOEB2F5FWBBIWVSKP6C223JGA",
    );
  });

  const now = new Date("2026-01-01T00:00:00Z");
  const setup = createOperatorSetup({ lattice: "default" }, now);

  it("chains operator → accounts → users, each signed by its issuer, with the NATS header", () => {
    const operator = decoded(setup.operator.jwt);
    expect(operator.headerText).toBe('{"typ":"JWT","alg":"ed25519-nkey"}');
    expect(operator.claims).toMatchObject({ iss: setup.operator.publicKey, sub: setup.operator.publicKey });
    expect(operator.claims["nats"]).toMatchObject({
      type: "operator",
      version: 2,
      system_account: setup.systemAccount.publicKey,
    });
    expect(verifyJwtSignature(operator, setup.operator.publicKey)).toBe(true);
    for (const account of Object.values(setup.accounts)) {
      const jwt = decoded(account.jwt);
      expect(jwt.claims).toMatchObject({
        iss: setup.operator.publicKey,
        sub: account.publicKey,
        iat: now.getTime() / 1000,
      });
      expect(verifyJwtSignature(jwt, setup.operator.publicKey)).toBe(true);
      expect(jwt.claims["jti"]).toBe(
        natsJwtId({
          iat: now.getTime() / 1000,
          iss: setup.operator.publicKey,
          name: String(jwt.claims["name"]),
          sub: account.publicKey,
        }),
      );
    }
    const host = decoded(setup.users.host.jwt);
    expect(verifyJwtSignature(host, setup.accounts.LATTICE.publicKey)).toBe(true);
    expect(verifyJwtSignature(decoded(setup.users.worker.jwt), setup.accounts.ARBITER.publicKey)).toBe(true);
    expect(verifyJwtSignature(decoded(setup.users.admin.jwt), setup.accounts.ARBITER.publicKey)).toBe(true);
  });

  it("embeds each role's allow-lists, and answers-only inboxes, in its user JWT", () => {
    const roles = rolePermissions({ lattice: "default" });
    const host = decoded(setup.users.host.jwt).claims["nats"];
    expect(host).toMatchObject({
      type: "user",
      version: 2,
      pub: { allow: roles.host.publish.allow, deny: roles.host.publish.deny },
      sub: { allow: roles.host.subscribe.allow, deny: roles.host.subscribe.deny },
      resp: { max: 1, ttl: 120_000_000_000 },
    });
    expect(decoded(setup.users.admin.jwt).claims["nats"]).not.toHaveProperty("resp");
  });

  it("links the accounts: Arbiter exports the policy service and the changes stream, the lattice imports them", () => {
    const arbiter = decoded(setup.accounts.ARBITER.jwt).claims["nats"];
    const lattice = decoded(setup.accounts.LATTICE.jwt).claims["nats"];
    expect(arbiter).toMatchObject({
      exports: [
        { subject: "wasmcloud.policy", type: "service" },
        { subject: "wasmcloud.policy.changes", type: "stream" },
        { subject: "wasmcloud.policy.changes.*", type: "stream" },
      ],
      limits: { disk_storage: -1 },
    });
    expect(lattice).toMatchObject({
      imports: expect.arrayContaining([
        expect.objectContaining({
          subject: "wasmcloud.policy",
          account: setup.accounts.ARBITER.publicKey,
          type: "service",
        }),
        expect.objectContaining({
          subject: "wasmcloud.policy.changes",
          account: setup.accounts.ARBITER.publicKey,
          type: "stream",
        }),
        expect.objectContaining({
          subject: "wasmcloud.policy.changes.*",
          account: setup.accounts.ARBITER.publicKey,
          type: "stream",
        }),
        expect.objectContaining({
          subject: "$JS.API.>",
          account: setup.accounts.LATTICE_JS.publicKey,
          type: "service",
        }),
        expect.objectContaining({
          subject: "_INBOX.>",
          account: setup.accounts.LATTICE_JS.publicKey,
          type: "stream",
        }),
      ]),
      limits: { disk_storage: 0, mem_storage: 0 },
      mappings: {
        "wasmcloud.policy.changes": [{ subject: "_ARBITER_DROPPED.wasmcloud.policy.changes", weight: 100 }],
        // Each host's own subject too: an answer steered there reaches no host.
        "wasmcloud.policy.changes.*": [
          { subject: "_ARBITER_DROPPED.wasmcloud.policy.changes.{{wildcard(1)}}", weight: 100 },
        ],
      },
    });
  });

  it("writes the server's operator block and .creds files as NATS tools read them", () => {
    const config = renderOperatorConfig(setup);
    expect(config).toContain(`operator: "${setup.operator.jwt}"`);
    expect(config).toContain("resolver: MEMORY");
    expect(config).toContain(`${setup.accounts.LATTICE.publicKey}: "${setup.accounts.LATTICE.jwt}"`);
    const creds = renderCredsFile(setup.users.host);
    expect(creds).toMatch(/-----BEGIN NATS USER JWT-----\n(.+)\n------END NATS USER JWT------/);
    expect(creds).toContain(
      `-----BEGIN USER NKEY SEED-----\n${setup.users.host.seed}\n------END USER NKEY SEED------`,
    );
  });
});
