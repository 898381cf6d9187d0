import { readFileSync } from "node:fs";
import { startNatsCluster } from "./harness/index.js";
import { describePermissionAttacks, passwordUsers, TEST_PASSWORDS } from "./support/permission-attacks.js";

const ACCOUNTS = readFileSync(new URL("../deploy/nats/accounts.conf", import.meta.url), "utf8");

describePermissionAttacks("deploy/nats/accounts.conf on a three-node JetStream cluster", async () => {
  const cluster = await startNatsCluster({ extraConfig: ACCOUNTS, env: { ...TEST_PASSWORDS } });
  await cluster.waitUntilFormed();
  // Every client on the first node, so that what one sends before another is seen in that order.
  const [first] = cluster.urls;
  if (first === undefined) throw new Error("the cluster has no node");
  return { ...passwordUsers(first, () => cluster.stop()), replicas: 3 };
});
