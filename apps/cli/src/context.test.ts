import { ArbiterError, ErrorCode } from "@arbiter/protocol";
import { PermissionViolationError, TimeoutError } from "@nats-io/nats-core";
import { describe, expect, it } from "vitest";
import { explainNatsFailure } from "./context.js";

describe("explainNatsFailure", () => {
  it("turns a bare request timeout into STORE_UNAVAILABLE saying NATS did not answer", () => {
    const explained = explainNatsFailure(new TimeoutError());
    expect(explained).toBeInstanceOf(ArbiterError);
    expect((explained as ArbiterError).code).toBe(ErrorCode.StoreUnavailable);
    expect((explained as ArbiterError).message).toMatch(/^NATS did not answer a request within 5 s/);
  });

  it("keeps an ArbiterError that already says what timed out", () => {
    const named = new ArbiterError(ErrorCode.StoreUnavailable, "cannot connect", {
      cause: new TimeoutError(),
    });
    expect(explainNatsFailure(named)).toBe(named);
  });

  it("names a permission refused anywhere in the causes, with the role the subject belongs to", () => {
    const refused = new PermissionViolationError(
      'Permissions Violation for Subscription to "_INBOX_arbiter_worker.x.*"',
      "subscription",
      "_INBOX_arbiter_worker.x.*",
    );
    const explained = explainNatsFailure(new Error("wrapped", { cause: refused })) as ArbiterError;
    expect(explained.code).toBe(ErrorCode.InvalidConfig);
    expect(explained.message).toMatch(/permission to subscribe to "_INBOX_arbiter_worker\.x\.\*"/);
    expect(explained.message).toMatch(/needs a worker's credentials/);
  });

  it("does not name a role for a subject that is no connection's inbox", () => {
    const refused = new PermissionViolationError(
      'Permissions Violation for Subscription to "wasmbus.evt.other.>"',
      "subscription",
      "wasmbus.evt.other.>",
    );
    const explained = explainNatsFailure(refused) as ArbiterError;
    expect(explained.code).toBe(ErrorCode.InvalidConfig);
    expect(explained.message).toMatch(/permissions do not allow it/);
    expect(explained.message).not.toMatch(/needs an? (admin|worker)'s credentials/);
  });

  it("returns anything else as it is", () => {
    const other = new Error("boom");
    expect(explainNatsFailure(other)).toBe(other);
  });
});
