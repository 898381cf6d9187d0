import { z } from "zod";

/**
 * A wasmCloud entity as zero-trust invocations name it (0.x wire format): a component by its `M`
 * key alone, anything else (a provider, a host, a service) by contract id, link name and key.
 */
export const WasmcloudEntity = z.object({
  public_key: z.string(),
  link_name: z.string(),
  contract_id: z.string(),
});
export type WasmcloudEntity = z.infer<typeof WasmcloudEntity>;

/**
 * The entity's URL: `wasmbus://{pk}` for a component (`M` key), else
 * `wasmbus://{contract_id}/{link_name}/{pk}` with ':' → '/' and ' ' → '_' in the contract id,
 * ' ' → '_' in the link name, both lower-cased (the key keeps its case).
 */
export function entityUrl(entity: WasmcloudEntity): string {
  if (entity.public_key.startsWith("M")) return `wasmbus://${entity.public_key}`;
  const contract = entity.contract_id.replaceAll(":", "/").replaceAll(" ", "_").toLowerCase();
  const link = entity.link_name.replaceAll(" ", "_").toLowerCase();
  return `wasmbus://${contract}/${link}/${entity.public_key}`;
}

/** The URL an invocation's claims name as their target: the target entity's URL, `/`, the operation. */
export function targetUrl(target: WasmcloudEntity, operation: string): string {
  return `${entityUrl(target)}/${operation}`;
}
