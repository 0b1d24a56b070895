"""decide(): the one judgement every way out of the proxy passes. Pure.

The rule files' verdict first (every rule that matches is recorded), then the built-in rules,
which only make it stricter.
"""

from __future__ import annotations

from shield_addon.actions import Action, RequestView
from shield_addon.core.builtin import BUILTINS
from shield_addon.core.context import Context
from shield_addon.rules import RuleSet, Subject, Verdict, evaluate


def decide(view: RequestView, action: Action, ruleset: RuleSet, ctx: Context) -> Verdict:
    verdict = evaluate(ruleset, Subject(view, action, ctx.flow, ctx.agent, ctx.first_contact))
    explicitly_allowed = verdict.enforced == "allow" and verdict.enforced_rule is not None
    for builtin in BUILTINS:
        if builtin.overridable and explicitly_allowed:
            continue
        if builtin.check(view, ctx):
            rule = builtin.rule
            return Verdict("deny", rule, (*verdict.matched, rule.id), verdict.action, "deny", rule)
    return verdict
