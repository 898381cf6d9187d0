import { describeRevocationStoresContract } from "../../../test/contracts/revocation-contract.js";
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
