"""Every AWS operation, from botocore's service models (aws_operations.json.gz).

scripts/aws_catalogue.py writes the file; docs/rules.md says how to regenerate it. At
run time botocore is not needed: the file is read once, on the first AWS request,
through the package loader like a module (pkgutil), and indexed:

- by signing name, endpoint prefix and JSON target prefix, to find the models a
  request may be for;
- by operation name, for requests whose service nothing names;
- for REST protocols, per service and method, by the first literal segment of the
  request URI template, so a path is tried against a handful of templates, not all.
"""

from __future__ import annotations

import functools
import gzip
import json
import pkgutil
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

DATA = "aws_operations.json.gz"
REST_PROTOCOLS = frozenset({"rest-json", "rest-xml"})


@dataclass(frozen=True)
class Service:
    name: str  # botocore's name: s3, sesv2, logs, cloudtrail
    protocols: tuple[str, ...]
    signing: str
    prefix: str
    target: str | None
    operations: frozenset[str]
    rest: dict[str, list[Any]] | None  # operation -> [method, uri, required query, required headers]
    deprecated: frozenset[str]


@dataclass(frozen=True)
class Template:
    operation: str
    path: re.Pattern[str]
    query: tuple[tuple[str, str | None], ...]  # literal ?key or ?key=value of the URI: must be there
    needs_query: tuple[str, ...]  # required query members
    needs_headers: tuple[str, ...]  # required header members
    literal: int  # literal characters of the path: more is more specific


@dataclass(frozen=True)
class Catalogue:
    botocore: str
    services: dict[str, Service]
    by_signing: dict[str, tuple[str, ...]]
    by_prefix: dict[str, tuple[str, ...]]
    by_target: dict[str, tuple[str, ...]]
    by_operation: dict[str, tuple[str, ...]]
    by_lower: dict[str, str]  # operation name in lower case -> the model's spelling

    def candidates(self, *names: str | None) -> tuple[str, ...]:
        """Models a signing name, host label or target prefix may mean, in that order."""
        found: dict[str, None] = {}
        for name in names:
            if not name:
                continue
            low = name.lower()
            for index in (self.by_signing, self.by_prefix, self.by_target):
                found.update(dict.fromkeys(index.get(low, ())))
        return tuple(found)

    def owners(self, candidates: tuple[str, ...], operation: str) -> tuple[str, ...]:
        """The models among `candidates` that have `operation`; every model that has it
        when none of them does (nothing trustworthy named the service)."""
        mine = tuple(c for c in candidates if operation in self.services[c].operations)
        return mine or self.by_operation.get(operation, ())

    def canonical(self, operation: str) -> str:
        """The model's spelling of `operation` when only its case differs."""
        if operation in self.by_operation:
            return operation
        return self.by_lower.get(operation.lower(), operation)


def load(raw: bytes) -> Catalogue:
    doc = json.loads(gzip.decompress(raw))
    services: dict[str, Service] = {}
    by_signing: dict[str, list[str]] = {}
    by_prefix: dict[str, list[str]] = {}
    by_target: dict[str, list[str]] = {}
    by_operation: dict[str, list[str]] = {}
    for name, entry in doc["services"].items():
        ops = entry["ops"]
        rest = ops if isinstance(ops, dict) else None
        service = Service(name, tuple(entry["protocols"]), entry["signing"], entry["prefix"], entry.get("target"),
                          frozenset(ops), rest, frozenset(entry.get("deprecated", ())))
        services[name] = service
        by_signing.setdefault(service.signing.lower(), []).append(name)
        by_prefix.setdefault(service.prefix.lower(), []).append(name)
        by_prefix.setdefault(name, []).append(name)
        if service.target:
            by_target.setdefault(service.target.lower(), []).append(name)
        for op in ops:
            by_operation.setdefault(op, []).append(name)

    def freeze(index: dict[str, list[str]]) -> dict[str, tuple[str, ...]]:
        return {k: tuple(dict.fromkeys(v)) for k, v in index.items()}

    by_lower: dict[str, str] = {}
    for op in sorted(by_operation):
        by_lower.setdefault(op.lower(), op)
    return Catalogue(doc["botocore"], services, freeze(by_signing), freeze(by_prefix), freeze(by_target),
                     freeze(by_operation), by_lower)


@functools.cache
def catalogue() -> Catalogue:
    # Read-only data shipped inside the package: loaded like a module, once.
    raw = pkgutil.get_data(__package__ or "shield_addon.actions", DATA)
    if raw is None:  # pragma: no cover - a broken installation
        raise RuntimeError(f"{DATA} is missing from shield_addon.actions")
    return load(raw)


# --- REST: method + path -> operation -------------------------------------------------

_LABEL = re.compile(r"\{([^}]+)\}")


def compile_template(operation: str, row: list[Any]) -> Template:
    uri = row[1]
    path, _, query = uri.partition("?")
    pattern, literal, pos = [], 0, 0
    for m in _LABEL.finditer(path):
        text = path[pos:m.start()]
        pattern.append(re.escape(text))
        literal += len(text)
        pattern.append(".+" if m.group(1).endswith("+") else "[^/]+")
        pos = m.end()
    text = path[pos:]
    literal += len(text)
    pattern.append(re.escape(text))
    regex = "".join(pattern).rstrip("/") if len(path) > 1 else "".join(pattern)
    literals = []
    for part in query.split("&") if query else ():
        key, eq, value = part.partition("=")
        literals.append((key, value if eq and not value.startswith("{") else None))
    needs_query = tuple(row[2]) if len(row) > 2 else ()
    needs_headers = tuple(row[3]) if len(row) > 3 else ()
    return Template(operation, re.compile(regex + "/?"), tuple(literals), needs_query, needs_headers, literal)


def _first_segment(path: str) -> str | None:
    """The first path segment if it is literal (the template's index key)."""
    segment = path.lstrip("/").split("/", 1)[0].split("?", 1)[0]
    return None if "{" in segment else segment


@functools.lru_cache(maxsize=1024)
def templates(service: str, method: str) -> dict[str | None, tuple[Template, ...]]:
    """The service's templates for `method`, keyed by their first literal segment
    (None: the template starts with a label, so any path may match it)."""
    rest = catalogue().services[service].rest or {}
    index: dict[str | None, list[Template]] = {}
    for op in sorted(rest):
        row = rest[op]
        if row[0] == method:
            index.setdefault(_first_segment(row[1]), []).append(compile_template(op, row))
    return {k: tuple(v) for k, v in index.items()}


def normal_path(path: str) -> str:
    """The path as the server routes it: percent-decoded (an encoded slash stays one),
    repeated slashes collapsed, no trailing slash."""
    if "%" in path:
        path = unquote(path.replace("%2F", "%252F").replace("%2f", "%252f"))
    if "//" in path:
        path = re.sub("/{2,}", "/", path)
    return path.rstrip("/") or "/"


def match_rest(
    services: tuple[str, ...],
    method: str,
    path: str,
    query: dict[str, str],
    headers: frozenset[str],
) -> list[tuple[str, str]]:
    """(service, operation) of the best-matching templates; several when they tie."""
    path = normal_path(path)
    segment = path.lstrip("/").split("/", 1)[0]
    best: list[tuple[str, str]] = []
    best_score: tuple[int, ...] = ()
    for service in services:
        if catalogue().services[service].rest is None:
            continue
        index = templates(service, method)
        for template in index.get(segment, ()) + index.get(None, ()):
            score = _score(template, path, query, headers)
            if score is None or score < best_score:
                continue
            if score > best_score:
                best, best_score = [], score
            best.append((service, template.operation))
    return best


def _score(t: Template, path: str, query: dict[str, str], headers: frozenset[str]) -> tuple[int, ...] | None:
    if not t.path.fullmatch(path):
        return None
    for key, value in t.query:
        if key not in query or (value is not None and query[key] != value):
            return None
    # A missing required member means the server would refuse this reading; prefer
    # the readings it would accept (DELETE with ?uploadId is AbortMultipartUpload).
    met = all(k in query for k in t.needs_query) and all(h in headers for h in t.needs_headers)
    constraints = len(t.query) + len(t.needs_query) + len(t.needs_headers)
    return (int(met), constraints if met else 0, t.literal)
