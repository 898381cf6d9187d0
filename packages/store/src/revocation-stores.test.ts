import { describe, expect, it } from "vitest";
import { describeRevocationStoresContract, revocation } from "../../../test/contracts/revocation-contract.js";
import { createMemoryActiveIndex } from "./active-index.js";
import { createMemoryRevocationLog, type MemoryRevocationLog, type RevocationLog } from "./revocation-log.js";

const logs = new WeakMap<RevocationLog, MemoryRevocationLog>();

describeRevocationStoresContract("in-memory", {
  createIndex: async () => createMemoryActiveIndex(),
  createLog: async (options) => {
    const log = createMemoryRevocationLog(options);
    logs.set(log, log);
    return log;
  },
  storeRaw: async (log, text) => {
    logs.get(log)!.storeRaw(text);
  },
});

describe("the in-memory revocation log", () => {
  it("refuses a text that is not its record's, writing nothing", async () => {
    const log = createMemoryRevocationLog();
    const record = revocation();
    const forged = JSON.stringify({ ...record, to: { permitted: true, message: "ok" } });
    await expect(log.appendBatch([{ record, id: "3:a", text: forged }])).rejects.toThrow(/not its record/);
    const read: unknown[] = [];
    for await (const stored of log.read()) read.push(stored);
    expect(read).toEqual([]);
  });
});
