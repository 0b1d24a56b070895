"""Judging one request: every rule that matches is recorded, the strictest verdict wins.

A request may carry several actions (an AWS operation and a SQL string; the method sent
and the one an override names): `judge` evaluates the rules against each, and the
strictest verdict over all of them wins, so no reading can hide another."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from shield_addon.actions import Action, Reading
from shield_addon.rules.model import CAPTURE_FIELDS, Rule, RuleSet, State, Subject, Verdict, strictness


def evaluate(ruleset: RuleSet, subject: Subject) -> Verdict:
    """Strictest verdict wins; the first rule (file order) with it is *the* rule.
    Shadow rules take part in `verdict` but never in `enforced`."""
    matched: list[tuple[Rule, dict[str, str]]] = []
    rules = ruleset.rules
    if ruleset.index is not None:
        req = subject.request
        rules = ruleset.index.candidates(req.method, req.host, subject.action)
    later = [rule for rule in rules if rule.after_others] if "unmatched" in ruleset.keys else []
    for rule in rules:
        captures = None if later and rule.after_others else rule.matches(subject)
        if captures is not None:
            matched.append((rule, captures))
    if later:
        matched = _then_unmatched(rules, later, matched, subject)
    verdict, best, captures = _strictest(ruleset.default, matched)
    enforced, enforced_rule, _ = _strictest(ruleset.default, [m for m in matched if m[0].mode == "enforce"])
    return Verdict(verdict, best, tuple(r.id for r, _ in matched), fill_action(subject.action, captures),
                   enforced, enforced_rule)


def judge(ruleset: RuleSet, readings: Sequence[Reading], flow: Any = None, agent: str = "",
          first_contact: bool = False, state: State | None = None) -> Verdict:
    """The verdict over every reading of one request. The action columns show the action
    that decided what happens (the strictest enforced verdict; on a tie, the one whose rule comes first in
    file order, then the first read); every rule that matched any reading is recorded.
    Every reading sees the same `state`: a request counts once for a `limit:`, however it is read."""
    verdicts = [evaluate(ruleset, Subject(r.request, r.action, flow, agent, first_contact, state=state))
                for r in readings]
    seen = tuple((r.request.method, v.action) for r, v in zip(readings, verdicts))
    if len(verdicts) == 1:
        return replace(verdicts[0], actions=seen)
    shown = _first_in_file_order(ruleset, verdicts, lambda v: (strictness(v.verdict), strictness(v.enforced)), "rule")
    decider = _first_in_file_order(ruleset, verdicts, lambda v: (strictness(v.enforced), strictness(v.verdict)),
                                   "enforced_rule")
    matched = tuple(dict.fromkeys(rule_id for v in verdicts for rule_id in v.matched))
    return Verdict(shown.verdict, shown.rule, matched, decider.action, decider.enforced, decider.enforced_rule, seen)


def _then_unmatched(rules: tuple[Rule, ...] | list[Rule], later: list[Rule], matched: list[tuple[Rule, dict[str, str]]],
                    subject: Subject) -> list[tuple[Rule, dict[str, str]]]:
    """The `unmatched:` rules' pass: they see whether any enforce rule named the request.
    Shadow rules do not count, or a rule in shadow would change what is enforced."""
    named = any(rule.mode == "enforce" for rule, _ in matched)
    rest = replace(subject, unmatched=not named)
    more = [(rule, captures) for rule in later if (captures := rule.matches(rest)) is not None]
    if not more:
        return matched
    order = {id(rule): i for i, rule in enumerate(rules)}  # file order decides among equals
    return sorted([*matched, *more], key=lambda m: order[id(m[0])])


def _first_in_file_order(ruleset: RuleSet, verdicts: list[Verdict], rank: Any, attr: str) -> Verdict:
    """The strictest verdict; among equals, the one whose rule comes first in file order, as
    within one reading ("the first rule with that verdict is *the* rule")."""
    top = rank(max(verdicts, key=rank))
    tied = [v for v in verdicts if rank(v) == top]
    if len(tied) == 1 or len({id(getattr(v, attr)) for v in tied}) == 1:
        return tied[0]
    order = {id(rule): i for i, rule in enumerate(ruleset.rules)}
    return min(tied, key=lambda v: order.get(id(getattr(v, attr)), len(order)))


def _strictest(default: str, matched: list[tuple[Rule, dict[str, str]]]) -> tuple[str, Rule | None, dict[str, str]]:
    best: tuple[Rule, dict[str, str]] | None = None
    for rule, captures in matched:
        if best is None or strictness(rule.action) > strictness(best[0].action):
            best = (rule, captures)
    if best is None or strictness(default) > strictness(best[0].action):
        # The file-level default can only make things stricter, never weaker.
        return default, None, best[1] if best else {}
    return best[0].action, best[0], best[1]


def fill_action(action: Action, captures: Mapping[str, str]) -> Action:
    """The action with its empty fields filled from the deciding rule's named groups."""
    changes: dict[str, Any] = {}
    for group, attr in CAPTURE_FIELDS.items():
        value = captures.get(group)
        if value and not getattr(action, attr):
            changes[attr] = (value,) if attr == "tables" else value
    return replace(action, **changes) if changes else action
