export type { CompiledRule, CompiledRules } from "./compile.js";
export { compileRules } from "./compile.js";
export type { DecidingWorker, DecisionContext, DecisionTrust } from "./decision.js";
export { decideRequest, decisionRecord, rejectionRecord, trustRefusal } from "./decision.js";
export type { ParseRulesOptions, Rule, RulesDocument, RulesDocumentInput } from "./document.js";
export {
  parseRulesDocument,
  RuleEffectV1,
  RuleModeV1,
  RulesDocumentV1,
  RuleV1,
  serializeRulesDocument,
  validateRulesDocument,
} from "./document.js";
export { InvalidRulesError, isInvalidRulesError, RulesIssue, RulesIssueStage } from "./errors.js";
export { Evaluation, evaluate } from "./evaluate.js";
export type { VariableName } from "./facts.js";
export { claimsAt, EvaluationFacts, VARIABLE_NAMES } from "./facts.js";
export type { ReplayCheck, ReplayOutcome, ReplayResult, WhatIfResult } from "./replay.js";
export { RevisionCache, replayDecision, whatIf } from "./replay.js";
export type { ChainBreak, FoldOutcome, RulesetState, RulesetTrust, StoredRuleEvent } from "./ruleset.js";
export {
  evolveRuleset,
  initialRulesetState,
  isEnrolled,
  isEnrolledAt,
  restoreSnapshot,
  ruleEventHash,
  signSnapshot,
  snapshotHeadMatches,
} from "./ruleset.js";
