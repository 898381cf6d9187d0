import { shownText } from "../shown-text.js";

/** One group of flipped decisions: how many, and in which direction. */
export interface FlipGroup {
  readonly flipped: number;
  /** Denied when recorded, permitted under the candidate. */
  readonly toPermitted: number;
  /** Permitted when recorded, denied under the candidate. */
  readonly toDenied: number;
}

/** What `arbiter audit whatif` found. */
export interface WhatIfReport {
  readonly candidate: string;
  readonly window: {
    readonly since: string | null;
    readonly until: string | null;
    readonly lattice: string | null;
    readonly host: string | null;
  };
  /** Decisions read in the window. */
  readonly decisions: number;
  /** Of those, the ones the rules decided (the others were refused before the rules ran). */
  readonly evaluated: number;
  /** Records that are not a DecisionV1, skipped. */
  readonly unreadable: number;
  readonly flipped: number;
  readonly toPermitted: number;
  readonly toDenied: number;
  /** How many groups of each kind there are; the lists below hold the 100 with the most flips. */
  readonly groups: { readonly rules: number; readonly subjects: number; readonly hosts: number };
  /** By the candidate's deciding rule (`null`: its default). */
  readonly byRule: readonly (FlipGroup & { readonly rule: string | null })[];
  readonly bySubject: readonly (FlipGroup & {
    readonly id: string | null;
    readonly imageRef: string | null;
  })[];
  readonly byHost: readonly (FlipGroup & { readonly lattice: string; readonly host: string })[];
  readonly maxFlipped: number | null;
  /** False when `maxFlipped` is set and `flipped` is above it. */
  readonly passed: boolean;
}

const ESCAPES: Readonly<Record<string, string>> = {
  "&": "&amp;",
  "<": "&lt;",
  ">": "&gt;",
  '"': "&quot;",
  "'": "&#39;",
};

/** `text` safe in HTML element content and quoted attribute values. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ESCAPES[c]!);
}

/**
 * The report as one self-contained HTML page: inline style, no script, no external asset. Every
 * string from the records (rule ids, component ids, image references, hosts: chosen by whoever
 * holds a host's credentials) is escaped, so it stays text.
 */
export function renderWhatIfReport(report: WhatIfReport, generatedAt: Date): string {
  const cell = (value: string | number | null) =>
    `<td>${value === null ? "<em>none</em>" : escapeHtml(shownText(String(value)))}</td>`;
  const counts = (g: FlipGroup) => `${cell(g.flipped)}${cell(g.toPermitted)}${cell(g.toDenied)}`;
  const table = (title: string, heads: readonly string[], rows: readonly string[], total: number) =>
    `<h2>${escapeHtml(title)}</h2>\n${total > rows.length ? `<p>the ${rows.length} groups with the most flips, of ${total}</p>\n` : ""}${
      rows.length === 0
        ? "<p>no flipped decisions</p>"
        : `<table><thead><tr>${[...heads, "flipped", "to permitted", "to denied"]
            .map((h) => `<th>${escapeHtml(h)}</th>`)
            .join("")}</tr></thead><tbody>\n${rows.map((r) => `<tr>${r}</tr>`).join("\n")}\n</tbody></table>`
    }`;
  const w = report.window;
  const summary: [string, string | number | null][] = [
    ["candidate", report.candidate],
    ["since", w.since],
    ["until", w.until],
    ["lattice", w.lattice],
    ["host", w.host],
    ["decisions", report.decisions],
    ["evaluated by the rules", report.evaluated],
    ["unreadable records", report.unreadable],
    ["flipped", report.flipped],
    ["to permitted", report.toPermitted],
    ["to denied", report.toDenied],
    ["max flipped", report.maxFlipped],
    ["passed", report.passed ? "yes" : "no"],
  ];
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<title>Arbiter what-if: ${escapeHtml(shownText(report.candidate))}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2rem; color: #222; }
table { border-collapse: collapse; margin-bottom: 1.5rem; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.6rem; text-align: left; font-family: ui-monospace, monospace; font-size: 0.85rem; }
th { background: #f0f0f0; }
.failed { color: #a00; }
</style>
</head>
<body>
<h1>What-if: ${escapeHtml(shownText(report.candidate))}</h1>
<p${report.passed ? "" : ' class="failed"'}>${report.flipped} of ${report.decisions} recorded decisions would get another answer under the candidate rules.</p>
<table><tbody>
${summary.map(([k, v]) => `<tr><th>${escapeHtml(k)}</th>${cell(v)}</tr>`).join("\n")}
</tbody></table>
${table(
  "By deciding rule (under the candidate)",
  ["rule"],
  report.byRule.map((g) => `${cell(g.rule ?? "(default)")}${counts(g)}`),
  report.groups.rules,
)}
${table(
  "By subject",
  ["id", "image"],
  report.bySubject.map((g) => `${cell(g.id)}${cell(g.imageRef)}${counts(g)}`),
  report.groups.subjects,
)}
${table(
  "By host",
  ["lattice", "host"],
  report.byHost.map((g) => `${cell(g.lattice)}${cell(g.host)}${counts(g)}`),
  report.groups.hosts,
)}
<p>Generated ${escapeHtml(generatedAt.toISOString())} by <code>arbiter audit whatif</code>.</p>
</body>
</html>
`;
}

/**
 * The report as the lines `arbiter audit whatif` prints, every recorded string as
 * {@link shownText} shows it (an escape sequence in a component id would otherwise reach the
 * auditor's terminal). `reportFile`: where the HTML page was written, if it was.
 */
export function renderWhatIfText(report: WhatIfReport, reportFile?: string): string {
  const groups = (title: string, rows: readonly string[]) =>
    rows.length === 0 ? [] : [`  by ${title}:`, ...rows.map((r) => `    ${r}`)];
  const n = (g: FlipGroup) => `${g.flipped} (${g.toPermitted} to permit, ${g.toDenied} to deny)`;
  const t = (value: string | null, none: string) => (value === null ? none : shownText(value));
  return [
    `${report.flipped} of ${report.decisions} decisions flip under ${shownText(report.candidate)} (${report.evaluated} evaluated by the rules; ${report.toPermitted} to permit, ${report.toDenied} to deny)`,
    ...groups(
      "deciding rule",
      report.byRule.map((g) => `${t(g.rule, "(default)")}: ${n(g)}`),
    ),
    ...groups(
      "subject",
      report.bySubject.map((g) => `${t(g.id, "-")} ${t(g.imageRef, "-")}: ${n(g)}`),
    ),
    ...groups(
      "host",
      report.byHost.map((g) => `${shownText(g.lattice)} ${shownText(g.host)}: ${n(g)}`),
    ),
    ...(report.maxFlipped === null
      ? []
      : [
          report.passed
            ? `within --max-flipped ${report.maxFlipped}`
            : `ABOVE --max-flipped ${report.maxFlipped}`,
        ]),
    ...(reportFile === undefined ? [] : [`report written to ${reportFile}`]),
  ].join("\n");
}
