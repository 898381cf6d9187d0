// Writes deploy/nats/{accounts,single-node,cluster-node}.conf from the one source of truth,
// packages/embedded-nats/src/permissions.ts (build first). A unit test fails when they differ.
// Usage: node scripts/nats-config.mjs
import { writeFile } from "node:fs/promises";
import {
  renderAccountsConfig,
  renderClusterNodeConfig,
  renderSingleNodeConfig,
} from "../packages/embedded-nats/dist/index.js";

const dir = new URL("../deploy/nats/", import.meta.url);
await writeFile(new URL("accounts.conf", dir), renderAccountsConfig({ lattice: "default" }));
await writeFile(new URL("single-node.conf", dir), renderSingleNodeConfig());
await writeFile(new URL("cluster-node.conf", dir), renderClusterNodeConfig());
console.log("wrote deploy/nats/accounts.conf, single-node.conf, cluster-node.conf");
