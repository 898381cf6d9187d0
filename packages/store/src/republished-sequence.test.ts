import { describe, expect, it } from "vitest";
import { MISSING_KEPT, RepublishedSequence } from "./republished-sequence.js";

/** A sequence made complete by a read that listed the stream at `listed`, with `seen` arriving first. */
function readAt(listed: number, seen: readonly number[] = []): RepublishedSequence {
  const sequence = new RepublishedSequence();
  sequence.startReading();
  for (const seq of seen) sequence.arrive(seq);
  expect(sequence.finishReading(listed)).toBe(true);
  return sequence;
}

describe("RepublishedSequence", () => {
  it("is complete only once a read of the stream covered it", () => {
    const sequence = new RepublishedSequence();
    sequence.arrive(41);
    sequence.arrive(42);
    expect(sequence.complete).toBe(false);
    sequence.startReading();
    sequence.arrive(43);
    expect(sequence.finishReading(42)).toBe(true);
    expect(sequence).toMatchObject({ complete: true, lastSeen: 43, contiguous: true });
  });

  it("covers writes stored before the listing but not arrived yet, and takes them late", () => {
    const sequence = readAt(100, [41]);
    expect(sequence.lastSeen).toBe(100);
    expect(sequence.arrive(99)).toEqual({ fresh: false, lost: false });
    expect(sequence.arrive(101)).toEqual({ fresh: true, lost: false });
    expect(sequence.complete).toBe(true);
  });

  it("awaits a write republished out of order instead of losing the mirror", () => {
    const sequence = readAt(10);
    expect(sequence.arrive(12)).toEqual({ fresh: true, lost: false });
    expect(sequence).toMatchObject({ complete: true, contiguous: false });
    expect(sequence.awaiting(12)).toBe(true);
    expect(sequence.awaiting(10)).toBe(false);
    expect(sequence.arrive(11)).toEqual({ fresh: false, lost: false });
    expect(sequence).toMatchObject({ complete: true, contiguous: true, lastSeen: 12 });
    expect(sequence.awaiting(12)).toBe(false);
  });

  it("loses the mirror on a skip longer than it awaits", () => {
    const sequence = readAt(10);
    expect(sequence.arrive(11 + MISSING_KEPT + 1)).toEqual({ fresh: true, lost: true });
    expect(sequence.complete).toBe(false);
    // Nothing more is awaited: the bucket is read again.
    expect(sequence.contiguous).toBe(true);
  });

  it("is not complete after a read during which writes after the listing were skipped for good", () => {
    const sequence = new RepublishedSequence();
    sequence.arrive(5);
    sequence.startReading();
    sequence.arrive(6);
    sequence.arrive(6 + MISSING_KEPT + 10);
    expect(sequence.finishReading(7)).toBe(false);
    expect(sequence.complete).toBe(false);
  });

  it("keeps awaiting, after a read, only the writes past its listing", () => {
    const sequence = new RepublishedSequence();
    sequence.startReading();
    sequence.arrive(1);
    sequence.arrive(3);
    sequence.arrive(6);
    expect(sequence.finishReading(3)).toBe(true);
    expect(sequence.awaiting(3)).toBe(false);
    expect(sequence.awaiting(5)).toBe(true);
    sequence.arrive(4);
    sequence.arrive(5);
    expect(sequence.contiguous).toBe(true);
  });

  it("forgets everything when the stream was made again, and a lost or failed read leaves it incomplete", () => {
    const sequence = readAt(50);
    sequence.restart();
    expect(sequence).toMatchObject({ complete: false, lastSeen: 0 });
    const again = readAt(5);
    again.lose();
    expect(again.complete).toBe(false);
    again.startReading();
    again.abortReading();
    expect(again.complete).toBe(false);
  });
});
