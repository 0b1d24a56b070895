"""decide(): the one judgement every way out of the proxy passes. Pure.

The rule files' verdict first (every rule that matches is recorded), then the built-in rules,
which only make it stricter.
"""

from __future__ import annotations

from collections.abc import Sequence

from shield_addon.actions import Reading
from shield_addon.core.builtin import BUILTINS
from shield_addon.core.context import Context
from shield_addon.rules import RuleSet, Verdict, judge


def decide(readings: Sequence[Reading], ruleset: RuleSet, ctx: Context) -> Verdict:
    """`readings[0]` is the request as sent: the built-in rules check it."""
    view = readings[0].request
    verdict = judge(ruleset, readings, ctx.flow, ctx.agent, ctx.first_contact, ctx.state)
    explicitly_allowed = verdict.enforced == "allow" and verdict.enforced_rule is not None
    for builtin in BUILTINS:
        if builtin.overridable and explicitly_allowed:
            continue
        if builtin.check(view, ctx):
            rule = builtin.rule
            return Verdict("deny", rule, (*verdict.matched, rule.id), verdict.action, "deny", rule, verdict.actions)
    return verdict
