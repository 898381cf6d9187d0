import { type Document, isMap, isPair, isScalar, isSeq, LineCounter, parseDocument, stringify } from "yaml";
import { z } from "zod";
import { InvalidRulesError, type RulesIssue } from "./errors.js";

const RULE_ID = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

/** What a rule (or the document default) does to a request: `allow` or `deny`. */
export const RuleEffectV1 = z.enum(["allow", "deny"]);
export type RuleEffectV1 = z.infer<typeof RuleEffectV1>;

/** `enforce` rules decide; `dryrun` rules are evaluated and reported but never change the outcome. */
export const RuleModeV1 = z.enum(["enforce", "dryrun"]);
export type RuleModeV1 = z.infer<typeof RuleModeV1>;

/** One rule: its `effect` applies when the CEL expression `when` is true. Unknown keys are rejected. */
export const RuleV1 = z.strictObject({
  id: z
    .string()
    .min(1, "must not be empty")
    .regex(RULE_ID, "must start with a letter or digit and contain only letters, digits, '.', '_' and '-'"),
  effect: RuleEffectV1,
  when: z.string().min(1, "must be a CEL expression, not empty"),
  message: z.string().min(1, "must not be empty (leave it out for a generated message)").optional(),
  mode: RuleModeV1.default("enforce"),
  description: z.string().optional(),
});
export type RuleV1 = z.infer<typeof RuleV1>;

/**
 * A rules document, version 1: what applies when no rule matches (`default`) and the rules, whose
 * ids are unique. Unknown keys are rejected, so a typo such as `efect` is an error, not ignored.
 */
export const RulesDocumentV1 = z
  .strictObject({
    version: z.literal(1),
    default: RuleEffectV1,
    rules: z.array(RuleV1),
  })
  .superRefine((doc, ctx) => {
    for (const issue of duplicateIdIssues(doc.rules)) ctx.addIssue({ code: "custom", ...issue });
  });
export type RulesDocumentV1 = z.infer<typeof RulesDocumentV1>;

/** A validated rules document (every rule has its `mode` filled in). */
export type RulesDocument = RulesDocumentV1;
/** A rule of a validated rules document. */
export type Rule = RuleV1;
/** A rules document as written, before validation fills in defaults (`mode` may be missing). */
export type RulesDocumentInput = z.input<typeof RulesDocumentV1>;

/** Options of {@link parseRulesDocument}. */
export interface ParseRulesOptions {
  /** `json` reads the text with YAML's JSON schema (plain words are not strings); default `yaml`. */
  readonly format?: "yaml" | "json";
  /** Where the text came from (a file name), used as a prefix in error messages. */
  readonly source?: string;
}

/**
 * Parses a rules document from YAML or JSON text (YAML is a superset of JSON, so one parser reads
 * both) and validates it. Throws {@link InvalidRulesError} listing every problem, each with its
 * path, the rule id when there is one, and the line and column in `text`.
 */
export function parseRulesDocument(text: string, options: ParseRulesOptions = {}): RulesDocument {
  const lineCounter = new LineCounter();
  const yamlDoc = parseDocument(text, {
    lineCounter,
    prettyErrors: false,
    schema: options.format === "json" ? "json" : "core",
    uniqueKeys: true,
  });
  const at = (offset: number) => {
    const { line, col } = lineCounter.linePos(offset);
    return { line, column: col };
  };
  if (yamlDoc.errors.length > 0) {
    const issues = yamlDoc.errors.map(
      (e): RulesIssue => ({ stage: "syntax", path: "", ...at(e.pos[0]), message: e.message }),
    );
    throw new InvalidRulesError(issues, sourceOption(options.source));
  }
  let value: unknown;
  try {
    value = yamlDoc.toJS({ maxAliasCount: 100 });
  } catch (cause) {
    // Alias bombs ("billion laughs") end here.
    const message = cause instanceof Error ? cause.message : String(cause);
    throw new InvalidRulesError([{ stage: "syntax", path: "", message }], {
      ...sourceOption(options.source),
      cause,
    });
  }
  return validate(value, options.source, (path, atKey) => {
    const offset = offsetOf(yamlDoc, path, atKey);
    return offset === undefined ? {} : at(offset);
  });
}

/**
 * Validates an already-parsed value (e.g. from an event payload) as a rules document and returns
 * it with defaults filled in. Throws {@link InvalidRulesError} naming the rule and field of every
 * problem.
 */
export function validateRulesDocument(value: unknown): RulesDocument {
  return validate(value, undefined, () => ({}));
}

/**
 * Writes a rules document as YAML or JSON text that {@link parseRulesDocument} reads back to an
 * equal document. `mode: enforce`, the default, is left out. Throws {@link InvalidRulesError} if
 * `doc` is not a valid document.
 */
export function serializeRulesDocument(doc: RulesDocumentInput, format: "yaml" | "json" = "yaml"): string {
  const valid = validateRulesDocument(doc);
  const plain = {
    version: valid.version,
    default: valid.default,
    rules: valid.rules.map((rule) => ({
      id: rule.id,
      effect: rule.effect,
      ...(rule.mode === "enforce" ? {} : { mode: rule.mode }),
      when: rule.when,
      ...(rule.message === undefined ? {} : { message: rule.message }),
      ...(rule.description === undefined ? {} : { description: rule.description }),
    })),
  };
  switch (format) {
    case "json":
      return `${JSON.stringify(plain, null, 2)}\n`;
    case "yaml":
      // lineWidth 0: never fold long `when` expressions over several lines.
      return stringify(plain, { lineWidth: 0 });
  }
}

type Path = readonly PropertyKey[];
type Position = Pick<RulesIssue, "line" | "column">;

// In text order, so people read them top to bottom; issues without a position keep their order.
function sortByPosition(issues: RulesIssue[]): RulesIssue[] {
  const end = Number.POSITIVE_INFINITY;
  return issues
    .slice()
    .sort((a, b) => (a.line ?? end) - (b.line ?? end) || (a.column ?? 0) - (b.column ?? 0) || 0);
}

function sourceOption(source: string | undefined): { source?: string } {
  return source === undefined ? {} : { source };
}

function validate(
  value: unknown,
  source: string | undefined,
  positionOf: (path: Path, atKey: boolean) => Position,
): RulesDocument {
  const result = RulesDocumentV1.safeParse(value);
  if (result.success) return result.data;
  const rules = ruleArray(value);
  const issues: RulesIssue[] = [];
  const seen = new Set<string>();
  const add = (path: Path, message: string, atKey = false) => {
    const key = `${formatPath(path)}\u0000${message}`;
    if (seen.has(key)) return;
    seen.add(key);
    const ruleId = ruleIdAt(rules, path);
    issues.push({
      stage: "schema",
      ...(ruleId === undefined ? {} : { ruleId }),
      path: formatPath(path),
      ...positionOf(path, atKey),
      message,
    });
  };
  for (const issue of result.error.issues) {
    if (issue.code === "unrecognized_keys") {
      // One issue per key, placed on the key itself, with a suggestion for likely typos.
      const known = issue.path.length === 0 ? DOCUMENT_KEYS : RULE_KEYS;
      for (const key of issue.keys) add([...issue.path, key], unknownKeyMessage(key, known), true);
    } else if (isMissing(value, issue.path)) {
      add(
        issue.path,
        `missing: ${issue.message.replace(/^Invalid (option|input): /, "").replace(/, received undefined$/, "")}`,
      );
    } else {
      add(issue.path, issue.message);
    }
  }
  // Zod skips the uniqueness refinement while other issues exist; report duplicates anyway.
  if (rules !== undefined) for (const issue of duplicateIdIssues(rules)) add(issue.path, issue.message);
  throw new InvalidRulesError(sortByPosition(issues), sourceOption(source));
}

const DOCUMENT_KEYS: readonly string[] = Object.keys(RulesDocumentV1.shape);
const RULE_KEYS: readonly string[] = Object.keys(RuleV1.shape);

function ruleArray(value: unknown): readonly unknown[] | undefined {
  if (typeof value !== "object" || value === null || !("rules" in value)) return undefined;
  return Array.isArray(value.rules) ? value.rules : undefined;
}

function ruleIdOf(rule: unknown): string | undefined {
  if (typeof rule !== "object" || rule === null || !("id" in rule)) return undefined;
  return typeof rule.id === "string" && rule.id !== "" ? rule.id : undefined;
}

function ruleIdAt(rules: readonly unknown[] | undefined, path: Path): string | undefined {
  if (rules === undefined || path[0] !== "rules" || typeof path[1] !== "number") return undefined;
  return ruleIdOf(rules[path[1]]);
}

/** True when `path` names a key its parent object (which exists) does not have: a required field left out. */
function isMissing(value: unknown, path: readonly PropertyKey[]): boolean {
  let parent: unknown = value;
  for (const key of path.slice(0, -1)) {
    if (typeof parent !== "object" || parent === null) return false;
    parent = (parent as Record<PropertyKey, unknown>)[key];
  }
  const last = path.at(-1);
  return last !== undefined && typeof parent === "object" && parent !== null && !Object.hasOwn(parent, last);
}

function duplicateIdIssues(rules: readonly unknown[]): { path: (string | number)[]; message: string }[] {
  const firstIndex = new Map<string, number>();
  const issues: { path: (string | number)[]; message: string }[] = [];
  rules.forEach((rule, index) => {
    const id = ruleIdOf(rule);
    if (id === undefined) return;
    const first = firstIndex.get(id);
    if (first === undefined) firstIndex.set(id, index);
    else
      issues.push({
        path: ["rules", index, "id"],
        message: `duplicate id "${id}" (also used by rules[${first}])`,
      });
  });
  return issues;
}

function formatPath(path: Path): string {
  let out = "";
  for (const part of path) {
    if (typeof part === "number") out += `[${part}]`;
    else out += out === "" ? String(part) : `.${String(part)}`;
  }
  return out;
}

function unknownKeyMessage(key: string, known: readonly string[]): string {
  const suggestion = known.find((k) => editDistance(k, key) <= 2);
  const hint =
    suggestion === undefined ? `expected one of ${known.join(", ")}` : `did you mean "${suggestion}"?`;
  return `unknown field "${key}"; ${hint}`;
}

// Levenshtein distance, only ever run on short field names.
function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const substitution = (previous[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1);
      current.push(Math.min((previous[j] ?? 0) + 1, (current[j - 1] ?? 0) + 1, substitution));
    }
    previous = current;
  }
  return previous[b.length] ?? 0;
}

// Offset of the deepest YAML node on `path`: the value (or with `atKey` the key) when the path
// exists, else the nearest map or list that should hold it.
function offsetOf(doc: Document, path: Path, atKey: boolean): number | undefined {
  let node: unknown = doc.contents;
  let offset = rangeStart(node);
  for (const [i, part] of path.entries()) {
    if (isMap(node)) {
      const pair = node.items.find((p) => isPair(p) && isScalar(p.key) && p.key.value === part);
      if (pair === undefined) break;
      const last = i === path.length - 1;
      offset = (last && !atKey ? rangeStart(pair.value) : undefined) ?? rangeStart(pair.key) ?? offset;
      node = pair.value;
    } else if (isSeq(node) && typeof part === "number") {
      node = node.items[part];
      offset = rangeStart(node) ?? offset;
    } else {
      break;
    }
  }
  return offset;
}

function rangeStart(node: unknown): number | undefined {
  if (node === null || typeof node !== "object" || !("range" in node) || !Array.isArray(node.range))
    return undefined;
  const start: unknown = node.range[0];
  return typeof start === "number" ? start : undefined;
}
