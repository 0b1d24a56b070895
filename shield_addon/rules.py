"""Rule files: load, validate, compile and evaluate. Pure: text in, verdicts out.

The format is fixed in DESIGN.md ("Rule files"). Parsing is strict on purpose: a typo
must never silently turn a rule into "match nothing" and so grant everything.
"""

from __future__ import annotations

import fnmatch
import hashlib
import io
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from mitmproxy import flowfilter
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from shield_addon.actions import SERVICES, Action, RequestView
from shield_addon.record import Redactions

VERDICTS = ("allow", "hold", "deny")  # in order of strictness
SEVERITIES = ("info", "low", "medium", "high", "critical")
CAPTURE_FIELDS = {"namespace": "namespace", "table": "tables", "resource": "resource_type", "name": "resource_name"}

TOP_KEYS = {"version", "default", "services", "rules", "tests", "hold", "redact"}
REDACT_KEYS = {"headers", "fields", "patterns"}
RULE_KEYS = {"id", "description", "match", "action", "severity", "message", "hold", "mode"}
HOLD_KEYS = {"timeout", "on_timeout", "mode", "approval_ttl", "retry_after"}
MATCH_KEYS = {
    "method", "host", "port", "path", "query", "header", "json", "body", "filter", "not", "agent",
    "service", "action_type", "operation", "resource", "resource_type", "namespace",
    "resource_name", "table", "sql",
}
MODES = ("enforce", "shadow")


class RuleError(ValueError):
    """A rule file is wrong; says where (file:line:column), which key, and why."""

    def __init__(self, file: str, line: int | None, key: str, reason: str, column: int | None = None):
        self.file, self.line, self.column, self.key, self.reason = file, line, column, key, reason
        where = file + (f":{line}" if line else "") + (f":{column}" if line and column else "")
        super().__init__(f"{where}: {key}: {reason}" if key else f"{where}: {reason}")


@dataclass(frozen=True)
class Subject:
    """What a rule is evaluated against."""

    request: RequestView
    action: Action
    flow: Any = None  # a mitmproxy flow, needed only by `filter:` matchers
    agent: str = ""


Predicate = Callable[[Subject, dict[str, str]], bool]


@dataclass(frozen=True)
class Matcher:
    """A compiled `match:`: named checks that must all hold, kept apart for `explain`."""

    checks: tuple[tuple[str, Predicate], ...] = ()
    # For the index: the exact values a request must have in these fields, when the rule
    # names them without wildcards ("method", "host", "service").
    requires: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def __call__(self, s: Subject, captures: dict[str, str]) -> bool:
        for _, p in self.checks:
            if not p(s, captures):
                return False
        return True

    def explain(self, s: Subject) -> list[tuple[str, bool]]:
        captures: dict[str, str] = {}
        return [(name, p(s, captures)) for name, p in self.checks]


@dataclass(frozen=True)
class HoldPolicy:
    timeout: float | None = None  # seconds; None: the proxy's shield_hold_timeout
    on_timeout: str = "deny"
    mode: str | None = None  # wait | retry; None: the proxy's shield_hold_mode
    approval_ttl: float | None = None  # retry mode: seconds an approval waits for the retry
    retry_after: int = 30  # retry mode: the Retry-After the agent is given


@dataclass(frozen=True)
class Rule:
    id: str
    action: str
    severity: str = "medium"
    message: str = ""
    description: str = ""
    hold: HoldPolicy = HoldPolicy()
    mode: str = "enforce"  # shadow: the verdict is recorded, never enforced
    file: str = ""
    line: int = 0
    predicate: Matcher = field(default_factory=Matcher, repr=False, compare=False)

    def matches(self, subject: Subject) -> dict[str, str] | None:
        """The named regex groups captured, or None when the rule does not match."""
        captures: dict[str, str] = {}
        return captures if self.predicate(subject, captures) else None


@dataclass(frozen=True)
class RuleSet:
    rules: tuple[Rule, ...] = ()
    default: str = "allow"
    sha256: str = hashlib.sha256(b"").hexdigest()
    files: tuple[str, ...] = ()
    services: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    tests: tuple[tuple[str, int, Mapping[str, Any]], ...] = ()
    redactions: Redactions = Redactions()
    index: RuleIndex | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Verdict:
    verdict: str  # what every matching rule, shadow ones included, says
    rule: Rule | None
    matched: tuple[str, ...]
    action: Action  # with fields filled from the deciding rule's named groups
    enforced: str = "allow"  # what the enforce-mode rules alone say: what happens
    enforced_rule: Rule | None = None

    @property
    def shadowed(self) -> bool:
        """A shadow rule would have decided otherwise."""
        return self.verdict != self.enforced


# ---------------------------------------------------------------- evaluation


def evaluate(ruleset: RuleSet, subject: Subject) -> Verdict:
    """Strictest verdict wins; the first rule (file order) with it is *the* rule.
    Shadow rules take part in `verdict` but never in `enforced`."""
    matched: list[tuple[Rule, dict[str, str]]] = []
    rules = ruleset.rules
    if ruleset.index is not None:
        req = subject.request
        rules = ruleset.index.candidates(req.method, req.host, subject.action)
    for rule in rules:
        captures = rule.matches(subject)
        if captures is not None:
            matched.append((rule, captures))
    verdict, best, captures = _strictest(ruleset.default, matched)
    enforced, enforced_rule, _ = _strictest(ruleset.default, [m for m in matched if m[0].mode == "enforce"])
    return Verdict(verdict, best, tuple(r.id for r, _ in matched), fill_action(subject.action, captures),
                   enforced, enforced_rule)


def _strictest(default: str, matched: list[tuple[Rule, dict[str, str]]]) -> tuple[str, Rule | None, dict[str, str]]:
    best: tuple[Rule, dict[str, str]] | None = None
    for rule, captures in matched:
        if best is None or strictness(rule.action) > strictness(best[0].action):
            best = (rule, captures)
    if best is None or strictness(default) > strictness(best[0].action):
        # The file-level default can only make things stricter, never weaker.
        return default, None, best[1] if best else {}
    return best[0].action, best[0], best[1]


def strictness(verdict: str) -> int:
    return VERDICTS.index(verdict)


def fill_action(action: Action, captures: Mapping[str, str]) -> Action:
    changes: dict[str, Any] = {}
    for group, attr in CAPTURE_FIELDS.items():
        value = captures.get(group)
        if value and not getattr(action, attr):
            changes[attr] = (value,) if attr == "tables" else value
    return replace(action, **changes) if changes else action


# ---------------------------------------------------------------- loading


def load_path(path: str | Path) -> RuleSet:
    """Load a rule file, or every *.yaml / *.yml file of a folder in name order."""
    p = Path(path)
    if p.is_dir():
        files = sorted([*p.glob("*.yaml"), *p.glob("*.yml")])
        if not files:
            raise RuleError(str(p), None, "", "no *.yaml rule files in this folder")
    elif p.is_file():
        files = [p]
    else:
        raise RuleError(str(p), None, "", "no such file or folder")
    texts = []
    for f in files:
        try:
            texts.append((str(f), f.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError) as e:
            raise RuleError(str(f), None, "", f"cannot read: {e}") from e
    return parse_texts(texts)


def parse_texts(texts: Iterable[tuple[str, str]]) -> RuleSet:
    """Compile several (file name, text) pairs into one rule set, in the given order."""
    texts = list(texts)
    rules: list[Rule] = []
    default = "allow"
    services: dict[str, tuple[str, ...]] = {}
    tests: list[tuple[str, int, Mapping[str, Any]]] = []
    redact_headers: list[str] = []
    redact_fields: list[str] = []
    redact_patterns: list[re.Pattern[str]] = []
    seen: dict[str, str] = {}
    digest = hashlib.sha256()
    for name, text in texts:
        digest.update(f"{Path(name).name}\0{len(text.encode())}\0".encode())
        digest.update(text.encode())
        doc = _load_yaml(name, text)
        file_default, file_rules, file_services, file_tests = _compile_file(name, doc)
        if "redact" in doc:
            h, f, p = _redact(_Ctx(name), doc["redact"], doc)
            redact_headers += h
            redact_fields += f
            redact_patterns += p
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
    fields = re.compile("|".join(f"(?:{f})" for f in redact_fields), re.IGNORECASE) if redact_fields else None
    redactions = Redactions(tuple(redact_headers), fields, tuple(redact_patterns))
    return RuleSet(tuple(rules), default, digest.hexdigest(), tuple(n for n, _ in texts), services, tuple(tests), redactions,
                   RuleIndex(rules))


def _redact(c: _Ctx, node: Any, doc: Any) -> tuple[list[str], list[str], list[re.Pattern[str]]]:
    """`redact: {headers: [names], fields: [regexes], patterns: [regexes]}`: more secrets."""
    _check_keys(c, node, REDACT_KEYS, "redact")
    headers = [str(h) for h in _as_list(node.get("headers", []))]
    fields = [_regex(c, f, node, "fields", "redact.fields").pattern for f in _as_list(node.get("fields", []))]
    patterns = [_regex(c, p, node, "patterns", "redact.patterns") for p in _as_list(node.get("patterns", []))]
    return headers, fields, patterns


def parse_text(text: str, name: str = "<rules>") -> RuleSet:
    return parse_texts([(name, text)])


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


class _Ctx:
    """Where we are in a file, so every error can say file:line:column and key."""

    def __init__(self, file: str):
        self.file = file

    def err(self, node: Any, key: str, reason: str, parent: Any = None, pkey: Any = None) -> RuleError:
        line, col = self.pos(node, parent, pkey)
        return RuleError(self.file, line, key, reason, col)

    def line(self, node: Any, parent: Any = None, pkey: Any = None) -> int | None:
        return self.pos(node, parent, pkey)[0]

    @staticmethod
    def pos(node: Any, parent: Any = None, pkey: Any = None) -> tuple[int | None, int | None]:
        """1-based (line, column) of parent[pkey] if given, else of node."""
        if parent is not None and pkey is not None and hasattr(parent, "lc"):
            try:
                at = parent.lc.key(pkey) if isinstance(parent, CommentedMap) else parent.lc.item(pkey)
                return at[0] + 1, at[1] + 1
            except (KeyError, IndexError, TypeError):
                pass
        if hasattr(node, "lc") and node.lc.line is not None:
            return node.lc.line + 1, (node.lc.col or 0) + 1
        return None, None


def _check_keys(c: _Ctx, node: Any, allowed: set[str], where: str) -> None:
    if not isinstance(node, CommentedMap):
        raise c.err(node, where, "must be a mapping")
    for k in node:
        if k not in allowed:
            raise c.err(node, f"{where}.{k}" if where else str(k), f"unknown key (allowed: {', '.join(sorted(allowed))})", node, k)


def _compile_file(name: str, doc: CommentedMap):
    c = _Ctx(name)
    _check_keys(c, doc, TOP_KEYS, "")
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
        tests.append((name, c.line(t, raw_tests, i) or 0, _plain(t)))
    return default, rules, services, tests


def _services(c: _Ctx, node: Any, doc: CommentedMap) -> dict[str, tuple[str, ...]]:
    if node is None:
        return {}
    if not isinstance(node, CommentedMap):
        raise c.err(node, "services", "must map a service to host globs", doc, "services")
    out = {}
    for svc, globs in node.items():
        if svc not in SERVICES:
            raise c.err(node, f"services.{svc}", f"unknown service (known: {', '.join(SERVICES)})", node, svc)
        for g in _as_list(globs):
            _glob(c, g, node, svc, f"services.{svc}")  # refuse a bad glob here, with its line
        out[svc] = tuple(str(g) for g in _as_list(globs))
    return out


def _rule(c: _Ctx, node: Any, parent: CommentedSeq, index: int, file_hold: HoldPolicy) -> Rule:
    where = f"rules[{index}]"
    if not isinstance(node, CommentedMap):
        raise c.err(node, where, "must be a mapping", parent, index)
    _check_keys(c, node, RULE_KEYS, where)
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
    predicate = _match(c, node["match"], node, "match", f"{where}: match")
    hold = _hold(c, node["hold"], node, "hold", file_hold) if "hold" in node else file_hold
    return Rule(
        id=rid, action=action, severity=severity, message=str(node.get("message", "")),
        description=str(node.get("description", "")), hold=hold, mode=mode, file=c.file,
        line=c.line(node, parent, index) or 0, predicate=predicate,
    )


def _hold(c: _Ctx, node: Any, parent: Any, key: str, base: HoldPolicy = HoldPolicy()) -> HoldPolicy:
    if not isinstance(node, CommentedMap):
        raise c.err(node, key, "must be a mapping", parent, key)
    _check_keys(c, node, HOLD_KEYS, key)
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
    return HoldPolicy(timeout, on_timeout, mode, ttl, retry_after)


def _duration(c: _Ctx, node: Any, key: str, name: str, default: float | None) -> float | None:
    if name not in node:
        return default
    try:
        return parse_duration(node[name])
    except ValueError as e:
        raise c.err(node, f"{key}.{name}", str(e), node, name) from e


def parse_duration(value: Any) -> float | None:
    """'90', 90, '30s', '10m', '2h', '1d' -> seconds; 'never' or 0 -> None (no timeout)."""
    if isinstance(value, bool):
        raise ValueError("a duration like 30s, 10m, 2h or never")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError("must not be negative")
        return float(value) or None
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)?\s*", str(value))
    if str(value).strip() == "never":
        return None
    if not m:
        raise ValueError(f"{value!r} is not a duration like 30s, 10m, 2h or never")
    seconds = float(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2) or "s"]
    return seconds or None


# ---------------------------------------------------------------- matchers


def _as_list(v: Any) -> list[Any]:
    return list(v) if isinstance(v, (list, tuple)) else [v]


def _plain(node: Any) -> Any:
    if isinstance(node, Mapping):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, (list, tuple)):
        return [_plain(v) for v in node]
    return node


def _regex(c: _Ctx, value: Any, parent: Any, key: Any, where: str) -> re.Pattern[str]:
    if not isinstance(value, str):
        raise c.err(value, where, "must be a regular expression (text)", parent, key)
    try:
        return re.compile(value)
    except re.error as e:
        raise c.err(value, where, f"bad regex: {e}", parent, key) from e


def _glob(c: _Ctx, value: Any, parent: Any, key: Any, where: str) -> re.Pattern[str]:
    if not isinstance(value, (str, int)) or isinstance(value, bool) or str(value) == "":
        raise c.err(value, where, "must be a non-empty glob (text)", parent, key)
    text = str(value)
    if text.count("[") != text.count("]"):
        raise c.err(value, where, f"bad glob {text!r}: unbalanced [ ]", parent, key)
    try:
        return re.compile(fnmatch.translate(text), re.IGNORECASE)
    except re.error as e:
        raise c.err(value, where, f"bad glob {text!r}: {e}", parent, key) from e


def _globs(c: _Ctx, value: Any, parent: Any, key: Any, where: str) -> list[re.Pattern[str]]:
    values = _as_list(value)
    if not values:
        raise c.err(value, where, "must not be an empty list", parent, key)
    return [_glob(c, v, parent, key, where) for v in values]


def _any_glob(patterns: Sequence[re.Pattern[str]], value: str | None) -> bool:
    return value is not None and any(p.match(value) for p in patterns)


def _match(c: _Ctx, node: Any, parent: Any, pkey: Any, where: str) -> Matcher:
    """Compile a `match:` mapping: every given field must hold."""
    if node is None:
        node = CommentedMap()
    _check_keys(c, node, MATCH_KEYS, where)
    preds: list[tuple[str, Predicate]] = []
    # `path` first: its named groups fill the action for the fields checked after it.
    for key in sorted(node, key=lambda k: (k != "path", k == "not")):
        preds.append((key, _field(c, key, node[key], node, f"{where}.{key}")))
    return Matcher(tuple(preds), _requires(node))


def _requires(node: Any) -> dict[str, frozenset[str]]:
    """Index keys a request must have for this match to be possible (see RuleIndex)."""
    out = {}
    for key in ("method", "host", "service", "action_type"):
        if key in node:
            keys = [_index_key(key, str(v)) for v in _as_list(node[key])]
            if keys and None not in keys:
                out[key] = frozenset(k for k in keys if k)
    if "sql" in node:
        out["facet"] = frozenset({"sql"})
    return out


def _index_key(field_name: str, value: str) -> str | None:
    """The key a value indexes under, or None when a wildcard makes it unindexable."""
    if field_name == "method":
        return value.upper()
    value = value.lower()
    if not any(ch in value for ch in "*?["):
        return value
    rest = value[2:] if value.startswith("*.") else value[:-2] if value.endswith(".*") else \
        value[:-1] if field_name == "service" and value.endswith(":*") else None
    if rest is None or any(ch in rest for ch in "*?["):
        return None
    return value  # "*.example.com", "api.*", "aws:*": looked up by request_keys()


def request_keys(method: str, host: str, action: Action) -> dict[str, set[str]]:
    """The index keys of one request: its exact values and the simple globs they satisfy."""
    host = host.lower()
    hosts = {host}
    i = host.find(".")
    while i != -1:
        hosts.add("*" + host[i:])  # *.example.com
        hosts.add(host[:i] + ".*")  # api.*
        i = host.find(".", i + 1)
    service = action.service.lower()
    services = {service}
    if ":" in service:
        services.add(service.split(":", 1)[0] + ":*")
    facets = {"sql"} if action.service == "sql" or "sql" in action.flags else set()
    return {"method": {method.upper()}, "host": hosts, "service": services, "action_type": {action.action_type},
            "facet": facets}


INDEXED = ("method", "host", "service", "action_type", "facet")


class RuleIndex:
    """Which rules could match a request, from its method, host, service, action type and
    whether it carries SQL, so evaluation skips rules that name other values: 500 rules
    cost what the few candidates cost. Sets of rules are int bitmasks: bit i is rule i."""

    def __init__(self, rules: Sequence[Rule]):
        self.any: dict[str, int] = {}
        self.exact: dict[str, dict[str, int]] = {}
        for key in INDEXED:
            exact: dict[str, int] = {}
            unconstrained = 0
            for i, rule in enumerate(rules):
                values = rule.predicate.requires.get(key)
                if values is None:
                    unconstrained |= 1 << i
                for value in values or ():
                    exact[value] = exact.get(value, 0) | 1 << i
            self.any[key], self.exact[key] = unconstrained, exact
        self.rules = tuple(rules)
        self._seen: dict[tuple[Any, ...], tuple[Rule, ...]] = {}

    def candidates(self, method: str, host: str, action: Action) -> tuple[Rule, ...]:
        """The rules, in file order; remembered per (method, host, service, action type, SQL or
        not): agents repeat them."""
        key = (method, host, action.service, action.action_type, action.service == "sql" or "sql" in action.flags)
        found = self._seen.get(key)
        if found is None:
            if len(self._seen) >= 4096:
                self._seen.clear()  # ever-new hosts get no memory, not unbounded growth
            found = self._seen[key] = tuple(self.rules[i] for i in self._candidates(method, host, action))
        return found

    def _candidates(self, method: str, host: str, action: Action) -> list[int]:
        found = -1  # every rule
        for key, values in request_keys(method, host, action).items():
            ids = self.any[key]
            exact = self.exact[key]
            for v in values:
                ids |= exact.get(v, 0)
            found &= ids
            if not found:
                return []
        out = []
        while found:  # lowest set bit first: file order, one step per candidate
            low = found & -found
            out.append(low.bit_length() - 1)
            found ^= low
        return out


def _field(c: _Ctx, key: str, value: Any, node: Any, w: str) -> Predicate:
    """One match field as a predicate over (subject, captured groups)."""
    if key == "method":
        methods = {str(m).upper() for m in _as_list(value)}
        return lambda s, cap: s.request.method in methods
    if key == "port":
        ports = set()
        for p in _as_list(value):
            if isinstance(p, bool) or not isinstance(p, int) or not 0 < p < 65536:
                raise c.err(value, w, f"{p!r} is not a port number", node, key)
            ports.add(p)
        return lambda s, cap: s.request.port in ports
    if key in ("host", "agent"):
        pats = _globs(c, value, node, key, w)
        return lambda s, cap: _any_glob(pats, s.request.host if key == "host" else s.agent)
    if key == "path":
        rx = _regex(c, value, node, key, w)
        return lambda s, cap: _path_match(rx, s, cap)
    if key in ("header", "query"):
        return _pairs_matcher(c, key, value, node, w)
    if key == "json":
        return _json_matcher(c, value, node, w)
    if key == "body":
        rx = _regex(c, value, node, key, w)
        return lambda s, cap: bool(rx.search(_body_text(s.request)))
    if key == "filter":
        if not isinstance(value, str):
            raise c.err(value, w, "must be a mitmproxy filter expression (text)", node, key)
        try:
            flt = flowfilter.parse(value)
        except ValueError as e:
            raise c.err(value, w, f"bad filter expression: {e}", node, key) from e
        return lambda s, cap: s.flow is not None and bool(flt(s.flow))
    if key == "not":
        inner = _match(c, value, node, key, w)
        return lambda s, cap: not inner(s, dict(cap))
    if key == "sql":
        return _sql_matcher(c, value, node, w)
    pats = _globs(c, value, node, key, w)
    if key == "table":
        return lambda s, cap: any(_any_glob(pats, t) for t in _tables(s, cap))
    attr = "resource_type" if key == "resource" else key  # `resource` is DESIGN's short name
    return lambda s, cap: _any_glob(pats, _action_field(s, cap, attr))


def _path_match(rx: re.Pattern[str], s: Subject, cap: dict[str, str]) -> bool:
    m = rx.search(s.request.path)
    if not m:
        return False
    cap.update({k: v for k, v in m.groupdict().items() if v is not None})
    return True


def _action_field(s: Subject, cap: Mapping[str, str], attr: str) -> str | None:
    value = getattr(s.action, attr)
    if value:
        return value
    group = {"namespace": "namespace", "resource_type": "resource", "resource_name": "name"}.get(attr)
    return cap.get(group) if group else None


def _tables(s: Subject, cap: Mapping[str, str]) -> tuple[str, ...]:
    return s.action.tables or ((cap["table"],) if cap.get("table") else ())


def _pairs_matcher(c: _Ctx, key: str, value: Any, parent: Any, where: str) -> Predicate:
    """`header:` / `query:` {name: regex}: every name present with a matching value."""
    if not isinstance(value, CommentedMap) or not value:
        raise c.err(value, where, f"must map {key} names to regexes", parent, key)
    fold = key == "header"  # header names are case-insensitive, query names are not
    checks = [(str(k).lower() if fold else str(k), _regex(c, v, value, k, f"{where}.{k}")) for k, v in value.items()]

    def pred(s: Subject, cap: dict[str, str]) -> bool:
        pairs = s.request.headers if fold else s.request.query
        return all(any(n == name and rx.search(v) for n, v in pairs) for name, rx in checks)

    return pred


_JSON_PATH = re.compile(r"\$((?:\.[A-Za-z_][\w-]*|\[\d+\]|\[\*\]|\.\*)*)$")
_JSON_STEP = re.compile(r"\.([A-Za-z_][\w-]*)|\[(\d+)\]|(\[\*\]|\.\*)")


def _json_matcher(c: _Ctx, value: Any, parent: Any, where: str) -> Predicate:
    if not isinstance(value, CommentedMap) or not value:
        raise c.err(value, where, "must map JSON paths like $.query to regexes", parent, "json")
    checks = []
    for path, rx in value.items():
        if not isinstance(path, str) or not _JSON_PATH.match(path):
            raise c.err(value, f"{where}.{path}", "bad JSON path (use $.a.b, $.a[0], $.a[*])", value, path)
        steps = [(m.group(1), m.group(2), m.group(3)) for m in _JSON_STEP.finditer(path[1:])]
        checks.append((steps, _regex(c, rx, value, path, f"{where}.{path}")))

    def pred(s: Subject, cap: dict[str, str]) -> bool:
        doc = _json_body(s.request)
        if doc is _NO_JSON:
            return False
        return all(any(rx.search(_scalar(v)) for v in _walk(doc, steps)) for steps, rx in checks)

    return pred


_NO_JSON = object()


def _json_body(req: RequestView) -> Any:
    if not req.body or req.body.lstrip()[:1] not in (b"{", b"["):
        return _NO_JSON
    try:
        return json.loads(req.body)
    except (ValueError, RecursionError):
        return _NO_JSON


def _walk(doc: Any, steps: list[tuple[str | None, str | None, str | None]]) -> Iterable[Any]:
    nodes = [doc]
    for key, index, star in steps:
        nxt = []
        for n in nodes:
            if key is not None and isinstance(n, dict) and key in n:
                nxt.append(n[key])
            elif index is not None and isinstance(n, list) and int(index) < len(n):
                nxt.append(n[int(index)])
            elif star is not None:
                nxt.extend(n.values() if isinstance(n, dict) else n if isinstance(n, list) else [])
        nodes = nxt
    return nodes


def _scalar(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(v, separators=(",", ":"))


def _sql_matcher(c: _Ctx, value: Any, parent: Any, where: str) -> Predicate:
    if not isinstance(value, CommentedMap) or set(value) - {"statement"} or "statement" not in value:
        raise c.err(value, where, "must be {statement: [drop, truncate, delete_without_where, ...]}", parent, "sql")
    wanted = {str(v).lower() for v in _as_list(value["statement"])}

    def pred(s: Subject, cap: dict[str, str]) -> bool:
        # "sql" in flags: SQL carried by another service, e.g. an MCP tool's arguments.
        is_sql = s.action.service == "sql" or "sql" in s.action.flags
        return is_sql and bool(wanted & (set(s.action.statements) | s.action.flags))

    return pred


def _body_text(req: RequestView) -> str:
    return req.body.decode("utf-8", "replace")
