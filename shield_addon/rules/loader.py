"""Rule files from text: parse the YAML, validate every key, compile the rules.

Strict on purpose: a typo must never silently turn a rule into "match nothing" and so
grant everything. Text in, RuleSet out; reading files is rules.files' job.
"""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Iterable, Mapping
from pathlib import PurePath
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from shield_addon.actions import SERVICES
from shield_addon.core import durations
from shield_addon.record import Redactions
from shield_addon.rules.index import RuleIndex
from shield_addon.rules.matchers import compile_match
from shield_addon.rules.model import (
    MODES,
    SEVERITIES,
    VERDICTS,
    CompileFilter,
    Escalation,
    HoldPolicy,
    Rule,
    RuleError,
    RuleSet,
    strictness,
)
from shield_addon.rules.nodes import Context, as_list, check_keys, glob, plain, regex

TOP_KEYS = {"version", "default", "services", "rules", "tests", "hold", "redact"}
REDACT_KEYS = {"headers", "fields", "patterns"}
RULE_KEYS = {"id", "description", "match", "action", "severity", "message", "hold", "mode"}
HOLD_KEYS = {"timeout", "on_timeout", "mode", "approval_ttl", "retry_after", "approvals", "preview"}
RULE_KEYS |= {"notify", "escalate"}  # who is told of the rule's holds (addons.notify)
ESCALATE_KEYS = {"after", "notify"}
# A notification target in a rule: an apprise URL (scheme://...) or the name of one of the proxy's.
TARGET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def parse_text(text: str, name: str = "<rules>", compile_filter: CompileFilter | None = None) -> RuleSet:
    return parse_texts([(name, text)], compile_filter)


def parse_texts(texts: Iterable[tuple[str, str]], compile_filter: CompileFilter | None = None) -> RuleSet:
    """Compile several (file name, text) pairs into one rule set, in the given order.
    Without `compile_filter`, a rule with a `filter:` is a RuleError."""
    texts = list(texts)
    rules: list[Rule] = []
    default = "allow"
    services: dict[str, tuple[str, ...]] = {}
    tests: list[tuple[str, int, Mapping[str, Any]]] = []
    redact: tuple[list[str], list[str], list[re.Pattern[str]]] = ([], [], [])
    seen: dict[str, str] = {}
    digest = hashlib.sha256()
    for name, text in texts:
        digest.update(f"{PurePath(name).name}\0{len(text.encode())}\0".encode())
        digest.update(text.encode())
        c = Context(name, compile_filter)
        doc = _load_yaml(name, text)
        file_default, file_rules, file_services, file_tests = _compile_file(c, doc)
        if "redact" in doc:
            for into, more in zip(redact, _redact(c, doc["redact"]), strict=True):
                into += more
        if strictness(file_default) > strictness(default):
            default = file_default
        for rule in file_rules:
            if rule.id in seen:
                raise RuleError(name, rule.line, "id", f"duplicate rule id {rule.id!r} (first in {seen[rule.id]})")
            seen[rule.id] = f"{name}:{rule.line}"
            rules.append(rule)
        for svc, globs in file_services.items():
            services[svc] = services.get(svc, ()) + globs
        tests.extend(file_tests)
    headers, fields, patterns = redact
    either = re.compile("|".join(f"(?:{f})" for f in fields), re.IGNORECASE) if fields else None
    redactions = Redactions(tuple(headers), either, tuple(patterns))
    return RuleSet(tuple(rules), default, digest.hexdigest(), tuple(n for n, _ in texts), services, tuple(tests), redactions,
                   RuleIndex(rules))


def _redact(c: Context, node: Any) -> tuple[list[str], list[str], list[re.Pattern[str]]]:
    """`redact: {headers: [names], fields: [regexes], patterns: [regexes]}`: more secrets."""
    check_keys(c, node, REDACT_KEYS, "redact")
    headers = [str(h) for h in as_list(node.get("headers", []))]
    fields = [regex(c, f, node, "fields", "redact.fields").pattern for f in as_list(node.get("fields", []))]
    patterns = [regex(c, p, node, "patterns", "redact.patterns") for p in as_list(node.get("patterns", []))]
    return headers, fields, patterns


def _load_yaml(name: str, text: str) -> CommentedMap:
    yaml = YAML(typ="rt")
    yaml.allow_duplicate_keys = False
    try:
        docs = list(yaml.load_all(io.StringIO(text)))
    except MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        raise RuleError(name, mark.line + 1 if mark else None, "", _one_line(e.problem or str(e)),
                        mark.column + 1 if mark else None) from e
    except YAMLError as e:
        raise RuleError(name, None, "", _one_line(str(e))) from e
    if len(docs) != 1:
        raise RuleError(name, None, "", f"expected exactly one YAML document, found {len(docs)}")
    doc = docs[0]
    if not isinstance(doc, CommentedMap):
        raise RuleError(name, 1, "", "the file must be a mapping with version, default and rules")
    return doc


def _one_line(s: str) -> str:
    return " ".join(s.split())


def _compile_file(c: Context, doc: CommentedMap) -> tuple[str, list[Rule], dict[str, tuple[str, ...]], list[Any]]:
    check_keys(c, doc, TOP_KEYS, "")
    if doc.get("version") != 1:
        raise c.err(doc, "version", "must be 1", doc, "version" if "version" in doc else None)
    default = doc.get("default", "allow")
    if default not in VERDICTS:
        raise c.err(doc, "default", f"must be one of {', '.join(VERDICTS)}", doc, "default")
    file_hold = _hold(c, doc.get("hold"), doc, "hold") if "hold" in doc else HoldPolicy()
    services = _services(c, doc.get("services"), doc)
    raw_rules = doc.get("rules", [])
    if not isinstance(raw_rules, list):
        raise c.err(doc, "rules", "must be a list", doc, "rules")
    rules = [_rule(c, r, raw_rules, i, file_hold) for i, r in enumerate(raw_rules)]
    tests = []
    raw_tests = doc.get("tests", [])
    if not isinstance(raw_tests, list):
        raise c.err(doc, "tests", "must be a list", doc, "tests")
    for i, t in enumerate(raw_tests):
        if not isinstance(t, CommentedMap):
            raise c.err(t, f"tests[{i}]", "must be a mapping", raw_tests, i)
        tests.append((c.file, c.line(t, raw_tests, i) or 0, plain(t)))
    return default, rules, services, tests


def _services(c: Context, node: Any, doc: CommentedMap) -> dict[str, tuple[str, ...]]:
    if node is None:
        return {}
    if not isinstance(node, CommentedMap):
        raise c.err(node, "services", "must map a service to host globs", doc, "services")
    out = {}
    for svc, globs in node.items():
        if svc not in SERVICES:
            raise c.err(node, f"services.{svc}", f"unknown service (known: {', '.join(SERVICES)})", node, svc)
        for g in as_list(globs):
            glob(c, g, node, svc, f"services.{svc}")  # refuse a bad glob here, with its line
        out[svc] = tuple(str(g) for g in as_list(globs))
    return out


def _rule(c: Context, node: Any, parent: CommentedSeq, index: int, file_hold: HoldPolicy) -> Rule:
    where = f"rules[{index}]"
    if not isinstance(node, CommentedMap):
        raise c.err(node, where, "must be a mapping", parent, index)
    check_keys(c, node, RULE_KEYS, where)
    rid = node.get("id")
    if not isinstance(rid, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.:-]*", rid):
        raise c.err(node, f"{where}.id", "required; letters, digits and _ . : - only", node, "id" if "id" in node else None)
    where = f"rule {rid}"
    action = node.get("action")
    if action not in VERDICTS:
        raise c.err(node, f"{where}: action", f"must be one of {', '.join(VERDICTS)}", node, "action" if "action" in node else None)
    severity = node.get("severity", "medium")
    if severity not in SEVERITIES:
        raise c.err(node, f"{where}: severity", f"must be one of {', '.join(SEVERITIES)}", node, "severity")
    for key in ("message", "description"):
        if key in node and not isinstance(node[key], str):
            raise c.err(node, f"{where}: {key}", "must be text", node, key)
    if "match" not in node:
        raise c.err(node, f"{where}: match", "required (use `match: {}` to match every request)")
    mode = node.get("mode", "enforce")
    if mode not in MODES:
        raise c.err(node, f"{where}: mode", "must be enforce or shadow", node, "mode")
    c.rule = rid
    predicate = compile_match(c, node["match"], f"{where}: match")
    hold = _hold(c, node["hold"], node, "hold", file_hold) if "hold" in node else file_hold
    return Rule(
        id=rid, action=action, severity=severity, message=str(node.get("message", "")),
        description=str(node.get("description", "")), hold=hold, mode=mode, file=c.file,
        line=c.line(node, parent, index) or 0, predicate=predicate,
        **_notices(c, node, where),
    )


def _notices(c: Context, node: CommentedMap, where: str) -> dict[str, Any]:
    """A rule's `notify:` and `escalate: {after, notify}`."""
    out: dict[str, Any] = {}
    if "notify" in node:
        out["notify"] = _targets(c, node, "notify", f"{where}: notify")
    if "escalate" in node:
        esc = node["escalate"]
        if not isinstance(esc, CommentedMap):
            raise c.err(esc, f"{where}: escalate", "must be a mapping like {after: 15m, notify: [oncall]}", node, "escalate")
        check_keys(c, esc, ESCALATE_KEYS, f"{where}: escalate")
        for key in ESCALATE_KEYS:
            if key not in esc:
                raise c.err(esc, f"{where}: escalate.{key}", "required", node, "escalate")
        try:
            after = durations.parse_duration(esc["after"])
        except ValueError as e:
            raise c.err(esc, f"{where}: escalate.after", str(e), esc, "after") from e
        if after <= 0:
            raise c.err(esc, f"{where}: escalate.after", "must be longer than 0s", esc, "after")
        out["escalate"] = Escalation(after, _targets(c, esc, "notify", f"{where}: escalate.notify"))
    return out


def _targets(c: Context, node: CommentedMap, key: str, where: str) -> tuple[str, ...]:
    """Notification targets: apprise URLs or names of targets the proxy's shield_notify defines."""
    values = as_list(node[key])
    if not values:
        raise c.err(node, where, "must name at least one target", node, key)
    for i, v in enumerate(values):
        at = (node[key], i) if isinstance(node[key], CommentedSeq) else (node, key)
        if not isinstance(v, str) or not ("://" in v or TARGET_NAME.fullmatch(v)):
            raise c.err(v, where, "each must be an apprise URL (scheme://...) or a target name "
                                  "(letters, digits, _ . -)", *at)
    return tuple(values)


def _hold(c: Context, node: Any, parent: Any, key: str, base: HoldPolicy = HoldPolicy()) -> HoldPolicy:  # noqa: B008 - frozen
    if not isinstance(node, CommentedMap):
        raise c.err(node, key, "must be a mapping", parent, key)
    check_keys(c, node, HOLD_KEYS, key)
    timeout = _duration(c, node, key, "timeout", base.timeout)
    on_timeout = node.get("on_timeout", base.on_timeout)
    if on_timeout not in ("allow", "deny"):
        raise c.err(node, f"{key}.on_timeout", "must be allow or deny", node, "on_timeout")
    mode = node.get("mode", base.mode)
    if mode not in ("wait", "retry", None):
        raise c.err(node, f"{key}.mode", "must be wait or retry", node, "mode")
    ttl = _duration(c, node, key, "approval_ttl", base.approval_ttl)
    retry_after = node.get("retry_after", base.retry_after)
    if isinstance(retry_after, bool) or not isinstance(retry_after, int) or retry_after < 0:
        raise c.err(node, f"{key}.retry_after", "must be a number of seconds", node, "retry_after")
    approvals = node.get("approvals", base.approvals)
    if isinstance(approvals, bool) or not isinstance(approvals, int) or approvals < 1:
        raise c.err(node, f"{key}.approvals", "must be a number of reviewers, 1 or more", node, "approvals")
    preview = node.get("preview", base.preview)
    if not isinstance(preview, bool):
        raise c.err(node, f"{key}.preview", "must be true or false", node, "preview")
    return HoldPolicy(timeout, on_timeout, mode, ttl, retry_after, approvals, preview)


def _duration(c: Context, node: Any, key: str, name: str, default: float | None) -> float | None:
    if name not in node:
        return default
    try:
        return parse_duration(node[name])
    except ValueError as e:
        raise c.err(node, f"{key}.{name}", str(e), node, name) from e


def parse_duration(value: Any) -> float | None:
    """A hold's duration in seconds, in the one grammar of shield_addon.core.durations
    ('90', 90, '30s', '10m', '2h', '1d', '1h30m'); 'never' or 0 -> None: no timeout."""
    if isinstance(value, str) and value.strip() == "never":
        return None
    try:
        return durations.parse_duration(value) or None
    except ValueError as e:
        raise ValueError(f"{e} (or never)") from None
