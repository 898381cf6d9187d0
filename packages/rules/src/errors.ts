import { ArbiterError, ErrorCode } from "@arbiter/protocol";
import { z } from "zod";

/**
 * Which check found a problem: the YAML/JSON `syntax`, the document `schema`, or the CEL
 * `expression` of a rule's `when`.
 */
export const RulesIssueStage = z.enum(["syntax", "schema", "expression"]);
export type RulesIssueStage = z.infer<typeof RulesIssueStage>;

/**
 * One problem found in a rules document. `path` is where in the document (`rules[1].when`);
 * `line`/`column` (1-based) are in the document text for `syntax` and `schema` issues and inside
 * the `when` expression for `expression` issues, and absent when no position is known.
 */
export const RulesIssue = z.object({
  stage: RulesIssueStage,
  ruleId: z.string().optional(),
  path: z.string(),
  line: z.number().int().positive().optional(),
  column: z.number().int().positive().optional(),
  message: z.string(),
});
export type RulesIssue = z.infer<typeof RulesIssue>;

/**
 * A rules document that cannot be used: bad YAML/JSON, a schema violation, or a `when` expression
 * that does not parse or names an unknown variable or function. `issues` lists every problem found.
 */
export class InvalidRulesError extends ArbiterError {
  readonly issues: readonly RulesIssue[];

  constructor(issues: readonly RulesIssue[], options?: ErrorOptions & { source?: string }) {
    super(
      ErrorCode.InvalidRules,
      formatIssues(issues, options?.source),
      options?.cause === undefined ? undefined : { cause: options.cause },
    );
    this.name = "InvalidRulesError";
    this.issues = issues;
  }
}

/** True when `err` is an {@link InvalidRulesError}. */
export function isInvalidRulesError(err: unknown): err is InvalidRulesError {
  return err instanceof InvalidRulesError;
}

/** Problems a message lists one by one; a file that is no rules document at all has hundreds. */
const MAX_LISTED_ISSUES = 20;

function formatIssues(issues: readonly RulesIssue[], source: string | undefined): string {
  const lines = issues.slice(0, MAX_LISTED_ISSUES).map((issue) => formatIssue(issue, source));
  if (issues.length === 1) return `invalid rules document: ${lines[0]}`;
  const more = issues.length - lines.length;
  const rest = more > 0 ? `\n  … and ${more} more (every one is in the error's issues)` : "";
  return `invalid rules document (${issues.length} problems):\n${lines.map((l) => `  - ${l}`).join("\n")}${rest}`;
}

function formatIssue(issue: RulesIssue, source: string | undefined): string {
  if (issue.stage === "expression") {
    // The position is inside the expression; most are one line, where "line 1" is noise.
    const position =
      issue.line === undefined
        ? ""
        : issue.line === 1
          ? `column ${issue.column ?? 1}`
          : `line ${issue.line}, column ${issue.column ?? 1}`;
    const field = issue.path.slice(issue.path.lastIndexOf(".") + 1);
    const rule = issue.ruleId === undefined ? issue.path : `rule "${issue.ruleId}"`;
    return `${rule}: ${field}${position === "" ? "" : `, ${position}`}: ${issue.message}`;
  }
  const where = documentPosition(issue, source);
  const what = issue.path === "" ? "" : `${describePath(issue)}: `;
  return `${where}${what}${issue.message}`;
}

// `rules.yaml:8:5: ` with a source, `line 8, column 5: ` without one.
function documentPosition(issue: RulesIssue, source: string | undefined): string {
  const column = issue.column ?? 1;
  if (source === undefined) return issue.line === undefined ? "" : `line ${issue.line}, column ${column}: `;
  return issue.line === undefined ? `${source}: ` : `${source}:${issue.line}:${column}: `;
}

// `rules[1].effect` becomes `rules[1] (id "only-wasmcloud-signed").effect` so people see the id.
function describePath(issue: RulesIssue): string {
  if (issue.ruleId === undefined) return issue.path;
  return issue.path.replace(/^rules\[(\d+)\]/, (m) => `${m} (id "${issue.ruleId}")`);
}
