// For sibling packages and tests only (the `./internal` export); not part of the public API.

export { toCelTimestamp, toCelValue } from "./cel-values.js";
export type { CelBindings } from "./compile.js";
