"""The candidate index: which rules could match a request, so evaluation skips the rest."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from shield_addon.actions import Action
from shield_addon.rules.model import Rule

INDEXED = ("method", "host", "service", "action_type", "facet")


def requires(match: Mapping[str, Any]) -> dict[str, frozenset[str]]:
    """Index keys a request must have for this `match:` to be possible (see RuleIndex)."""
    out = {}
    for key in ("method", "host", "service", "action_type"):
        if key in match:
            values = match[key]
            keys = [index_key(key, str(v)) for v in (values if isinstance(values, (list, tuple)) else [values])]
            if keys and None not in keys:
                out[key] = frozenset(k for k in keys if k)
    if "sql" in match:
        out["facet"] = frozenset({"sql"})
    return out


def index_key(field_name: str, value: str) -> str | None:
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
