import { z } from "zod";

/**
 * The body of an expiry timer (a message of the expiries stream): the claims expiry, in unix
 * seconds, at which permitted cached decisions whose claims carry it are evaluated again.
 */
export const ExpiryTimerV1 = z.strictObject({
  expiresAt: z.number().int().refine(Number.isSafeInteger, "not a safe integer"),
});
export type ExpiryTimerV1 = z.infer<typeof ExpiryTimerV1>;
