import { describe, expect, it } from "vitest";
import { describeUnfilteredIndexConsumer } from "./index-consumer.js";

describe("describeUnfilteredIndexConsumer", () => {
  it("names the consumer and what its workers do, and says nothing when it has its filter", () => {
    expect(describeUnfilteredIndexConsumer("arbiter-active-index")).toMatch(
      /^the consumer arbiter-active-index keeps no filter .*skip it by its header/,
    );
    expect(describeUnfilteredIndexConsumer(undefined)).toBeNull();
  });
});
