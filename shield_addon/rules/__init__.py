"""Rules: YAML rule files compiled into a rule set that judges actions.

One job per module: `model` (the data: rules, rule sets, subjects, verdicts), `loader`
(text -> rule set, with file:line:column errors), `matchers` (match fields -> predicates),
`index` (which rules can match a request at all), `jsonpath`, `evaluation`. All of them are
pure. Reading files is `files`; compiling mitmproxy filter expressions is `flowfilter`.
"""

from shield_addon.rules.evaluation import evaluate, fill_action, judge
from shield_addon.rules.files import load_path, parse_text, rule_files
from shield_addon.rules.loader import HOLD_KEYS, RULE_KEYS, TOP_KEYS, parse_duration, parse_texts
from shield_addon.rules.matchers import MATCH_KEYS
from shield_addon.rules.model import (
    CAPTURE_FIELDS,
    MODES,
    SEVERITIES,
    VERDICTS,
    HoldPolicy,
    Matcher,
    Rule,
    RuleError,
    RuleSet,
    State,
    Subject,
    Verdict,
    strictness,
)

__all__ = [
    "CAPTURE_FIELDS", "HOLD_KEYS", "MATCH_KEYS", "MODES", "RULE_KEYS", "SEVERITIES", "TOP_KEYS", "VERDICTS",
    "HoldPolicy", "Matcher", "Rule", "RuleError", "RuleSet", "State", "Subject", "Verdict", "evaluate", "fill_action",
    "judge", "load_path", "parse_duration", "parse_text", "parse_texts", "rule_files", "strictness",
]
