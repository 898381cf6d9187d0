/**
 * What an admin is told when the active index's consumer, made without a filter by an earlier
 * release, could not be given one (`consumer`: its name); null when there is nothing to tell.
 */
export function describeUnfilteredIndexConsumer(consumer: string | undefined): string | null {
  if (consumer === undefined) return null;
  return (
    `the consumer ${consumer} keeps no filter (this nats-server refused to give it one): its workers are ` +
    "delivered every re-evaluation batch and skip it by its header, as before; the fan-out works, with more " +
    "traffic between nats-server and the workers"
  );
}
