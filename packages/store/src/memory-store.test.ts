import { describeStoreContract } from "../../../test/contracts/store-contract.js";
import { createMemoryStore } from "./memory-store.js";

describeStoreContract("in-memory", { create: async () => createMemoryStore() });
