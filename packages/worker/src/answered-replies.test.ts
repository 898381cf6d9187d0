import { describe, expect, it } from "vitest";
import { AnsweredReplies } from "./answered-replies.js";

describe("AnsweredReplies", () => {
  it("lets each reply subject be answered once within the window", () => {
    let now = 0;
    const replies = new AnsweredReplies(1000, () => now);
    expect(replies.claim("_INBOX.a.1")).toBe(true);
    expect(replies.claim("_INBOX.a.2")).toBe(true);
    expect(replies.claim("_INBOX.a.1")).toBe(false);
    now = 499;
    expect(replies.claim("_INBOX.a.1")).toBe(false);
    // Next generation: still remembered from the previous one.
    now = 700;
    expect(replies.claim("_INBOX.a.1")).toBe(false);
    expect(replies.claim("_INBOX.a.3")).toBe(true);
  });

  it("forgets a subject after at most the window, and keeps at most two generations", () => {
    let now = 0;
    const replies = new AnsweredReplies(1000, () => now);
    replies.claim("_INBOX.a.1");
    now = 500;
    replies.claim("_INBOX.a.2");
    now = 1000;
    expect(replies.claim("_INBOX.a.1")).toBe(true);
    expect(replies.claim("_INBOX.a.2")).toBe(false);
    now = 5000;
    expect(replies.size).toBe(2);
    expect(replies.claim("_INBOX.a.2")).toBe(true);
    expect(replies.size).toBe(1);
  });
});
