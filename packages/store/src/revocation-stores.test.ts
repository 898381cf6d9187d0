import { describeRevocationStoresContract } from "../../../test/contracts/revocation-contract.js";
import { createMemoryActiveIndex } from "./active-index.js";
import { createMemoryRevocationLog } from "./revocation-log.js";

describeRevocationStoresContract("in-memory", {
  createIndex: async () => createMemoryActiveIndex(),
  createLog: async () => createMemoryRevocationLog(),
});
