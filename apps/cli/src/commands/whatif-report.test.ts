import { describe, expect, it } from "vitest";
import { hasMisleadingCharacters } from "../shown-text.js";
import { escapeHtml, renderWhatIfReport, renderWhatIfText, type WhatIfReport } from "./whatif-report.js";

const ATTACK = `<script>alert("x")</script><img src=x onerror='alert(1)'>`;

function report(overrides: Partial<WhatIfReport> = {}): WhatIfReport {
  const group = { flipped: 2, toPermitted: 2, toDenied: 0 };
  return {
    candidate: "candidate.yaml",
    window: { since: null, until: null, lattice: null, host: null },
    decisions: 10,
    evaluated: 9,
    unreadable: 0,
    flipped: 2,
    toPermitted: 2,
    toDenied: 0,
    groups: { rules: 1, subjects: 1, hosts: 1 },
    byRule: [{ rule: ATTACK, ...group }],
    bySubject: [{ id: "MCOMPONENT", imageRef: `ghcr.io/acme/${ATTACK}:1`, ...group }],
    byHost: [{ lattice: ATTACK, host: "NHOST", ...group }],
    maxFlipped: 1,
    passed: false,
    ...overrides,
  };
}

describe("renderWhatIfReport", () => {
  it("keeps host-controlled strings as text: no element or attribute of theirs survives", () => {
    const html = renderWhatIfReport(report(), new Date("2026-12-01T00:00:00.000Z"));
    expect(html).not.toContain("<script");
    expect(html).not.toContain("<img");
    expect(html).not.toContain("onerror='");
    expect(html).toContain("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;");
    expect(html).toContain("ghcr.io/acme/&lt;script&gt;");
  });

  it("is self-contained: no external asset, no script, a policy that forbids loading any", () => {
    const group = { flipped: 1, toPermitted: 0, toDenied: 1 };
    const html = renderWhatIfReport(
      report({
        byRule: [{ rule: "r1", ...group }],
        bySubject: [{ id: "M", imageRef: "ghcr.io/acme/a:1", ...group }],
        byHost: [{ lattice: "default", host: "N", ...group }],
      }),
      new Date(),
    );
    expect(html).not.toMatch(/\b(src|href)=/i);
    expect(html).toContain("default-src 'none'");
    expect(html).toContain("By deciding rule");
    expect(html).toContain("By subject");
    expect(html).toContain("By host");
  });

  it("says when it lists only the groups with the most flips", () => {
    const html = renderWhatIfReport(report({ groups: { rules: 1, subjects: 5000, hosts: 1 } }), new Date());
    expect(html).toContain("the 1 groups with the most flips, of 5000");
  });

  it("says when nothing flipped", () => {
    const html = renderWhatIfReport(
      report({ flipped: 0, toPermitted: 0, byRule: [], bySubject: [], byHost: [], passed: true }),
      new Date(),
    );
    expect(html).toContain("no flipped decisions");
  });
});

describe("renderWhatIfReport against strings made to mislead", () => {
  it("shows bidirectional and control characters as escapes, so a host id cannot read as another", () => {
    // U+202E turns the rest of the cell around: "N…EVIL" would display as another key.
    const spoof = "NHONEST\u202eLIVE\u2066x\u0000\u001b[31m";
    const html = renderWhatIfReport(
      report({ byHost: [{ lattice: "default", host: spoof, flipped: 1, toPermitted: 1, toDenied: 0 }] }),
      new Date(),
    );
    expect(hasMisleadingCharacters(html.split("\n").join(""))).toBe(false);
    expect(html).toContain("NHONEST\\u202eLIVE\\u2066x\\u0000\\u001b[31m");
  });

  it("cuts a huge value, saying how long it was", () => {
    const huge = "a".repeat(1_000_000);
    const html = renderWhatIfReport(
      report({ bySubject: [{ id: huge, imageRef: null, flipped: 1, toPermitted: 1, toDenied: 0 }] }),
      new Date(),
    );
    expect(html.length).toBeLessThan(20_000);
    expect(html).toContain(`${"a".repeat(200)}… (1000000 characters)`);
  });
});

describe("renderWhatIfText", () => {
  it("keeps escape sequences and bidirectional characters of recorded strings off the terminal", () => {
    // ESC ] 52 writes the auditor's clipboard, ESC [ 2 J clears the screen, U+202E turns text around.
    const text = renderWhatIfText(
      report({
        byRule: [{ rule: "r\u001b]52;c;ZWNobyBoaQ==\u0007", flipped: 1, toPermitted: 1, toDenied: 0 }],
        bySubject: [{ id: "M\u001b[2J", imageRef: "img\u202e1:", flipped: 1, toPermitted: 1, toDenied: 0 }],
        byHost: [{ lattice: "default", host: "N\u009b31m", flipped: 1, toPermitted: 1, toDenied: 0 }],
      }),
      "out.html",
    );
    expect(hasMisleadingCharacters(text.split("\n").join(""))).toBe(false);
    expect(text).toContain("M\\u001b[2J");
    expect(text).toContain("img\\u202e1:");
    expect(text).toContain("N\\u009b31m");
    expect(text).toContain("report written to out.html");
  });
});

describe("escapeHtml", () => {
  it("escapes the five characters that end text or an attribute", () => {
    expect(escapeHtml(`&<>"'`)).toBe("&amp;&lt;&gt;&quot;&#39;");
  });
});
