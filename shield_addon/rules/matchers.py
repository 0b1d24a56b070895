"""Compiling `match:` blocks: each field becomes a named predicate over (subject, captured groups)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

from ruamel.yaml.comments import CommentedMap

from shield_addon.actions import RequestView
from shield_addon.core import durations, limits, windows
from shield_addon.record.redaction import SECRET_KINDS, secret_kinds
from shield_addon.rules import jsonpath
from shield_addon.rules.index import requires
from shield_addon.rules.model import Matcher, Predicate, Subject
from shield_addon.rules.nodes import Context, as_list, check_keys, globs, regex

MATCH_KEYS = {
    "method", "host", "port", "path", "query", "header", "json", "body", "filter", "not", "agent",
    "service", "action_type", "operation", "resource", "resource_type", "namespace",
    "resource_name", "table", "sql", "flag", "first_contact", "unmatched", "limit", "when", "secrets",
}
LIMIT_KEYS = {"count", "per", "by"}
WHEN_KEYS = {"between", "not_between", "days", "tz"}


def compile_match(c: Context, node: Any, where: str, nested: bool = False) -> Matcher:
    """Compile a `match:` mapping: every given field must hold."""
    if node is None:
        node = CommentedMap()
    check_keys(c, node, MATCH_KEYS, where)
    if nested and isinstance(node, Mapping) and "limit" in node:
        raise c.err(node, f"{where}.limit", "only at the top of a rule's match: (a count is of the requests the rule "
                    "matches)", node, "limit")
    preds: list[tuple[str, Predicate]] = []
    # `path` first: its named groups fill the action for the fields checked after it.
    # `limit` last: it counts a request only once every other field held.
    for key in sorted(node, key=lambda k: (k != "path", k in ("not", "limit"), k == "limit")):
        preds.append((key, _field(c, key, node[key], node, f"{where}.{key}")))
    return Matcher(tuple(preds), requires(node), _keys(node))


def _keys(node: Any) -> frozenset[str]:
    """The match keys of `node` and of the `not:` blocks nested in it."""
    if not isinstance(node, Mapping):
        return frozenset()
    return frozenset(str(k) for k in node) | _keys(node.get("not"))


def _field(c: Context, key: str, value: Any, node: Any, w: str) -> Predicate:
    """One match field as a predicate over (subject, captured groups)."""
    if key == "method":
        methods = {str(m).upper() for m in as_list(value)}
        return lambda s, cap: s.request.method in methods
    if key == "port":
        return _port_matcher(c, value, node, w)
    if key in ("host", "agent"):
        pats = globs(c, value, node, key, w)
        return lambda s, cap: _any_glob(pats, s.request.host if key == "host" else s.agent)
    if key == "path":
        rx = regex(c, value, node, key, w)
        return lambda s, cap: _path_match(rx, s, cap)
    if key in ("header", "query"):
        return _pairs_matcher(c, key, value, node, w)
    if key == "json":
        return _json_matcher(c, value, node, w)
    if key == "body":
        rx = regex(c, value, node, key, w)
        return lambda s, cap: any(rx.search(text) for text in _body_texts(s.request))
    if key == "filter":
        return _filter_matcher(c, value, node, w)
    if key == "not":
        inner = compile_match(c, value, w, nested=True)
        return lambda s, cap: not inner(s, dict(cap))
    if key == "sql":
        return _sql_matcher(c, value, node, w)
    if key == "first_contact":
        wanted = _bool(c, value, node, key, w)
        return _first_contact(c.rule, wanted)
    if key == "limit":
        return _limit_matcher(c, value, node, w)
    if key == "when":
        return _when_matcher(c, value, node, w)
    if key == "secrets":
        return _secrets_matcher(c, value, node, w)
    if key == "unmatched":
        if value is not True:
            # `false` would be "some rule matched", which says nothing a rule could act on.
            raise c.err(value, w, "must be true: the rule applies when no other enforce rule matched", node, key)
        return lambda s, cap: s.unmatched
    pats = globs(c, value, node, key, w)
    if key == "flag":  # facts parsers found: unparsed, dry_run, duplicate_keys, impersonate, ...
        return lambda s, cap: any(_any_glob(pats, f) for f in s.action.flags)
    if key == "table":
        return lambda s, cap: any(_any_glob(pats, t) for t in _tables(s, cap))
    attr = "resource_type" if key == "resource" else key  # `resource` is the short name
    return lambda s, cap: _any_glob(pats, _action_field(s, cap, attr))


def _first_contact(rule: str, wanted: bool) -> Predicate:
    def pred(s: Subject, cap: dict[str, str]) -> bool:
        if s.state is not None:
            s.state.note(rule, f"first_contact: {'a first' if s.first_contact else 'not a first'} request of agent "
                               f"{s.agent!r} to {s.request.host}:{s.request.port}")
        return s.first_contact == wanted

    return pred


def _any_glob(patterns: Sequence[re.Pattern[str]], value: str | None) -> bool:
    return value is not None and any(p.match(value) for p in patterns)


def _bool(c: Context, value: Any, node: Any, key: str, where: str) -> bool:
    if not isinstance(value, bool):
        raise c.err(value, where, "must be true or false", node, key)
    return value


def _port_matcher(c: Context, value: Any, node: Any, where: str) -> Predicate:
    ports = set()
    for p in as_list(value):
        if isinstance(p, bool) or not isinstance(p, int) or not 0 < p < 65536:
            raise c.err(value, where, f"{p!r} is not a port number", node, "port")
        ports.add(p)
    return lambda s, cap: s.request.port in ports


def _filter_matcher(c: Context, value: Any, node: Any, where: str) -> Predicate:
    """`filter:` a mitmproxy filter expression, compiled by the compiler the reader of the file
    supplied; it needs the flow, so a subject without one never matches."""
    if not isinstance(value, str):
        raise c.err(value, where, "must be a mitmproxy filter expression (text)", node, "filter")
    if c.compile_filter is None:
        raise c.err(value, where, "cannot be compiled here: these rules were loaded without a filter compiler "
                    "(load rule files with rules.load_path, or pass compile_filter)", node, "filter")
    try:
        flt = c.compile_filter(value)
    except ValueError as e:
        raise c.err(value, where, f"bad filter expression: {e}", node, "filter") from e
    return lambda s, cap: s.flow is not None and bool(flt(s.flow))


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


def _pairs_matcher(c: Context, key: str, value: Any, parent: Any, where: str) -> Predicate:
    """`header:` / `query:` {name: regex}: every name present with a matching value."""
    if not isinstance(value, CommentedMap) or not value:
        raise c.err(value, where, f"must map {key} names to regexes", parent, key)
    fold = key == "header"  # header names are case-insensitive, query names are not
    checks = [(str(k).lower() if fold else str(k), regex(c, v, value, k, f"{where}.{k}")) for k, v in value.items()]

    def pred(s: Subject, cap: dict[str, str]) -> bool:
        pairs = s.request.headers if fold else s.request.query
        return all(any(n == name and rx.search(v) for n, v in pairs) for name, rx in checks)

    return pred


def _json_matcher(c: Context, value: Any, parent: Any, where: str) -> Predicate:
    """`json:` {path: regex}: some value at every path matches its regex."""
    if not isinstance(value, CommentedMap) or not value:
        raise c.err(value, where, "must map JSON paths like $.query to regexes", parent, "json")
    checks = []
    for path, rx in value.items():
        steps = jsonpath.parse(path)
        if steps is None:
            raise c.err(value, f"{where}.{path}", "bad JSON path (use $.a.b, $.a[0], $.a[*])", value, path)
        checks.append((steps, regex(c, rx, value, path, f"{where}.{path}")))

    def pred(s: Subject, cap: dict[str, str]) -> bool:
        # Each document of a YAML stream on its own: the checks describe one object, and a
        # benign first document must not hide the one a server also reads.
        return any(
            all(any(rx.search(jsonpath.scalar(v)) for v in jsonpath.walk(doc, steps)) for steps, rx in checks)
            for doc in jsonpath.documents(s.request)
        )

    return pred


def _sql_matcher(c: Context, value: Any, parent: Any, where: str) -> Predicate:
    if not isinstance(value, CommentedMap) or set(value) - {"statement"} or "statement" not in value:
        raise c.err(value, where, "must be {statement: [drop, truncate, delete_without_where, ...]}", parent, "sql")
    wanted = {str(v).lower() for v in as_list(value["statement"])}

    def pred(s: Subject, cap: dict[str, str]) -> bool:
        # "sql" in flags: SQL carried by another service, e.g. an MCP tool's arguments.
        is_sql = s.action.service == "sql" or "sql" in s.action.flags
        return is_sql and bool(wanted & (set(s.action.statements) | s.action.flags))

    return pred


def _body_texts(req: RequestView) -> Iterator[str]:
    """The body as sent and, for a form, as the server decodes it: `%41ction=Terminate...` is
    `Action=Terminate...` to the server, so a regex written for the latter must match. Either
    matching is a match; decoding is done once, as servers do (`%2541` stays `%41`)."""
    text = req.body.decode("utf-8", "replace")
    yield text
    if req.content_type in ("application/x-www-form-urlencoded", "") and ("%" in text or "+" in text):
        yield unquote_plus(text)


# ------------------------------------------------------------ keys that remember (State)


def _limit_matcher(c: Context, value: Any, node: Any, where: str) -> LimitCheck:
    """`limit: {count: N, per: 10m, by: agent+action}` (LimitCheck)."""
    if not isinstance(value, CommentedMap):
        raise c.err(value, where, "must be {count: N, per: 10m, by: agent}", node, "limit")
    check_keys(c, value, LIMIT_KEYS, where)
    count = value.get("count")
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise c.err(value, f"{where}.count", "required: a whole number of requests, at least 1", value,
                    "count" if "count" in value else None)
    if "per" not in value:
        raise c.err(value, f"{where}.per", f"required: {durations.HINT}")
    try:
        per = durations.parse_duration(value["per"])
    except ValueError as e:
        raise c.err(value, f"{where}.per", str(e), value, "per") from e
    if per <= 0:
        raise c.err(value, f"{where}.per", "must be longer than zero", value, "per")
    by = tuple(str(value.get("by", "agent")).replace(" ", "").lower().split("+"))
    if any(b not in limits.BY for b in by):
        raise c.err(value, f"{where}.by", f"dimensions joined by + from: {', '.join(limits.BY)}", value, "by")
    return LimitCheck(c.rule, count, per, by, f"{count} per {value['per']} by {'+'.join(by)}")


@dataclass(frozen=True)
class LimitCheck:
    """A compiled `limit:`: the rule matches a request only when `count` requests it counted
    for the same key are already in the window (core.limits): the count+1th and later. It
    runs after every other field held, so it records (State.counted) exactly the requests
    that matched the rest of the rule. Without a memory (State.counts) it never matches."""

    rule: str
    count: int
    per: float  # seconds
    by: tuple[str, ...]
    spec: str  # as written, for `rules explain`

    def __call__(self, s: Subject, cap: dict[str, str]) -> bool:
        st = s.state
        if st is None or st.counts is None or st.now is None:
            return False
        key = limits.key_of(_dimension(s, cap, b) for b in self.by)
        seen = st.counts(self.rule, key, self.per, st.now)
        st.counted[(self.rule, key)] = self.count
        st.note(self.rule, f"limit: {seen} counted before this one for {key} (limit {self.spec})")
        return seen >= self.count


def _dimension(s: Subject, cap: Mapping[str, str], by: str) -> str:
    if by == "agent":
        return s.agent
    if by == "host":
        return s.request.host
    if by == "method":
        return s.request.method
    if by == "action":
        return f"{s.action.service} {s.action.operation}"
    if by == "resource":
        return _action_field(s, cap, "resource_type") or ""
    return _action_field(s, cap, by) or ""


def _when_matcher(c: Context, value: Any, node: Any, where: str) -> Predicate:
    """`when: {between: "09:00-17:00" | not_between: ..., days: [mon, fri], tz: Europe/Berlin}`,
    or a list of them (any one applies): the rule applies at those times (core.windows).
    Without a clock (State.now) it never matches."""
    blocks = value if isinstance(value, list) else [value]
    if not blocks:
        raise c.err(value, where, "must not be an empty list", node, "when")
    found = [_window(c, b, value if isinstance(value, list) else node, i if isinstance(value, list) else "when", where)
             for i, b in enumerate(blocks)]
    rule = c.rule

    def pred(s: Subject, cap: dict[str, str]) -> bool:
        st = s.state
        if st is None or st.now is None:
            return False
        hit = any(w.active(st.now) for w in found)
        st.note(rule, f"when: {found[0].local_text(st.now)} is {'inside' if hit else 'outside'}")
        return hit

    return pred


def _window(c: Context, node: Any, parent: Any, key: Any, where: str) -> windows.Window:
    if not isinstance(node, CommentedMap) or not node:
        raise c.err(node, where, "must be {between: \"09:00-17:00\", days: [mon, fri], tz: Europe/Berlin}",
                    parent, key)
    check_keys(c, node, WHEN_KEYS, where)
    if "between" in node and "not_between" in node:
        raise c.err(node, f"{where}.not_between", "use between or not_between, not both", node, "not_between")
    out: dict[str, Any] = {}
    for name in ("between", "not_between"):
        if name in node:
            try:
                out["start"], out["end"] = windows.parse_range(node[name])
            except ValueError as e:
                raise c.err(node, f"{where}.{name}", str(e), node, name) from e
            out["inside"] = name == "between"
    if "days" in node:
        try:
            out["days"] = windows.parse_days(as_list(node["days"]))
        except ValueError as e:
            raise c.err(node, f"{where}.days", str(e), node, "days") from e
    if "tz" in node:
        try:
            out["tz"], out["tz_name"] = windows.zone(node["tz"]), str(node["tz"]).strip()
        except ValueError as e:
            raise c.err(node, f"{where}.tz", str(e), node, "tz") from e
    return windows.Window(**out)


SECRET_CHOICES = (*SECRET_KINDS, "any")


def _secrets_matcher(c: Context, value: Any, node: Any, where: str) -> Predicate:
    """`secrets: [aws, github, ...]`: the request carries a credential of one of these shapes
    anywhere the redaction detectors look (path and query, header names and values, body):
    seen before the trail redacts it."""
    kinds = {str(k).strip().lower() for k in as_list(value)}
    if not kinds or kinds - set(SECRET_CHOICES):
        raise c.err(value, where, f"a list from: {', '.join(SECRET_CHOICES)}", node, "secrets")
    wanted = set(SECRET_KINDS) if "any" in kinds else kinds
    rule = c.rule

    def pred(s: Subject, cap: dict[str, str]) -> bool:
        found = request_secrets(s.request)
        if s.state is not None:
            s.state.note(rule, f"secrets: {', '.join(sorted(found)) or 'none'} found")
        return bool(found & wanted)

    return pred


_last_secrets: tuple[RequestView | None, frozenset[str]] = (None, frozenset())
# Header lines repeat on every request of an agent (its Authorization above all), and the
# detectors' regex costs ~0.2 µs a character: the kinds of each line are remembered, under a
# digest of the line, never the line itself (no secret is kept by this cache).
_HEADER_KINDS: dict[bytes, frozenset[str]] = {}
_HEADER_KINDS_MAX = 4096
_HEADER_CACHED_MAX = 2048  # characters; a longer line is scanned each time


def request_secrets(req: RequestView) -> frozenset[str]:
    """The kinds of credential a request carries. The last answer is kept: several rules (and
    readings) ask about the same request one after the other."""
    global _last_secrets
    if _last_secrets[0] is req:
        return _last_secrets[1]
    found: set[str] = set()
    for name, value in req.headers:
        found |= _header_kinds(name, value)
    # The path and query as one text: no token shape crosses a line break.
    target = "\n".join([req.path, *(f"{k}={v}" for k, v in req.query)])
    for text in (target, *_body_texts(req)):
        found |= secret_kinds(text)
    _last_secrets = (req, frozenset(found))
    return _last_secrets[1]


def _header_kinds(name: str, value: str) -> frozenset[str]:
    line = f"{name}: {value}"
    if len(line) > _HEADER_CACHED_MAX:
        return frozenset(secret_kinds(line))
    digest = hashlib.blake2b(line.encode("utf-8", "surrogatepass"), digest_size=16).digest()
    kinds = _HEADER_KINDS.get(digest)
    if kinds is None:
        if len(_HEADER_KINDS) >= _HEADER_KINDS_MAX:
            _HEADER_KINDS.clear()  # ever-new lines get no memory, not unbounded growth
        kinds = _HEADER_KINDS[digest] = frozenset(secret_kinds(line))
    return kinds
