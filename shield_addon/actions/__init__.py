"""Request -> Actions: which services a request talks to and what it does there.

Like mitmproxy's proxyauth implementations, each service is one small module behind
one interface, `parse(req, pinned) -> Action | None`. Every parser reads every request
(`parse_all`): a request can carry several actions (an AWS operation beside a decoy
`"query": "SELECT 1"`, SQL inside an MCP call), and rules judge each, so no parser can
hide another by answering first. `rest` answers when none does. A method override
(`X-HTTP-Method-Override: DELETE`, `_method=delete`) that frameworks honour is a second
reading of the request with that method (`readings`). Everything here is pure: no
mitmproxy, no I/O.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase

from . import aws, graphql, kubernetes, mcp, postgrest, rest, sql
from .base import ACTION_TYPES, Action, RequestView
from .common import body_flags, form_body, json_body, part_views, request_view, routed_path, strictest

__all__ = [
    "ACTION_TYPES",
    "PARSERS",
    "SERVICES",
    "Action",
    "RequestView",
    "Reading",
    "parse",
    "parse_all",
    "pinned_service",
    "readings",
    "request_view",
]

Parser = Callable[[RequestView, bool], Action | None]

# The order is the order actions are listed in (the first is the one shown when several
# decide alike): the most specific readings first.
PARSERS: dict[str, Parser] = {
    "kubernetes": kubernetes.parse,
    "mcp": mcp.parse,
    "graphql": graphql.parse,
    "sql": sql.parse,
    "aws": aws.parse,
    "postgrest": postgrest.parse,
}
# Names `pinned` accepts; pinning a host to "rest" turns the guessing off for it.
SERVICES = (*PARSERS, "rest")


def parse(req: RequestView, pinned: Mapping[str, Sequence[str]] | None = None) -> Action:
    """The most dangerous of the actions `req` carries (see parse_all)."""
    found = parse_all(req, pinned)
    worst = strictest(a.action_type for a in found)
    return next(a for a in found if a.action_type == worst)


# Parsers that read only the body, query and headers, never the method or path: their
# answer is the same for every reading of one request, so `readings` asks them once.
_SAME_FOR_EVERY_READING = frozenset({"sql", "mcp"})


def parse_all(req: RequestView, pinned: Mapping[str, Sequence[str]] | None = None,
              shared: dict[str, Action | None] | None = None) -> tuple[Action, ...]:
    """Every action `req` carries, one per parser that reads it; the REST reading when
    none does. `pinned` maps a service name to host globs (case-insensitive) whose
    requests that service's parser must read, e.g. {"kubernetes": ["*.k8s.internal"]};
    a host pinned to "rest" is read by method alone.

    Never raises on anything in the request; raises ValueError for an unknown service
    name in `pinned`, which is configuration, not traffic. `shared`: the answers of the
    parsers in _SAME_FOR_EVERY_READING, kept between readings of one request.
    """
    service = pinned_service(req.host, pinned) if pinned else None
    if service == "rest":
        found = [rest.parse(req)]
    else:
        found = []
        for name, parser in PARSERS.items():
            if name == service:
                action = _forced(name, req)
            elif shared is not None and name in _SAME_FOR_EVERY_READING:
                if name not in shared:
                    shared[name] = _run(name, parser, req, False)
                action = shared[name]
            else:
                action = _run(name, parser, req, False)
            if action is not None:
                found.append(action)
        found = found or [rest.parse(req)]
    # How the body was read (duplicate keys, a YAML stream, a body that says JSON and is
    # not) is a fact about every action in it: a rule on any of them may hold on it.
    read = body_flags(req) if req.body else frozenset()
    if read:
        found = [dataclasses.replace(a, flags=a.flags | read) for a in found]
    return tuple(found)


@dataclass(frozen=True)
class Reading:
    """One way the server may read a request: the request as judged and what it does."""

    request: RequestView
    action: Action


# Headers and parameters that frameworks (Rails, Laravel, Express' method-override,
# Spring's HiddenHttpMethodFilter, Google APIs, ...) take as the real method.
OVERRIDE_HEADERS = ("x-http-method-override", "x-http-method", "x-method-override")
OVERRIDE_PARAMS = ("_method",)


def readings(req: RequestView, pinned: Mapping[str, Sequence[str]] | None = None) -> tuple[Reading, ...]:
    """Every action of `req` as sent, then of `req` with each method an override names, and
    with its path as lenient servers route it (`/v1/x/../refunds`, `/v1//refunds/`,
    `/v1/refunds;x=1`): the server may honour the override or not, normalise the path or
    not, so each is judged and the strictest wins. Then each part of a multipart body, read
    as a body of its own."""
    variants = [req]
    resolved = routed_path(req.path)
    if resolved != req.path:
        variants.append(dataclasses.replace(req, path=resolved))
    variants += [dataclasses.replace(v, method=m) for v in list(variants) for m in overrides(req)]
    shared: dict[str, Action | None] = {}
    found = [Reading(v, a) for v in variants for a in parse_all(v, pinned, shared)]
    # Each part of a multipart body is a body to the application that reads it (an uploaded
    # .sql file, a JSON-RPC call, a manifest): every parser reads it as one.
    if req.content_type.startswith("multipart/"):
        every_file = bool(pinned) and pinned_service(req.host, pinned or {}) is not None
        found += [Reading(p, a) for p in part_views(req, every_file) for a in parse_all(p, pinned)]
    return tuple(found)


def overrides(req: RequestView) -> tuple[str, ...]:
    """The methods other than req.method that an override header or parameter names: every
    comma-separated token (servers differ on which of a list they take), and `_method` in a
    form (urlencoded or multipart), the query or a JSON body's top level (Laravel reads it
    from JSON too)."""
    # CGI-style servers (PHP, WSGI, Rack) read `X_HTTP_METHOD_OVERRIDE` as the same variable
    # HTTP_X_HTTP_METHOD_OVERRIDE as the dashed name, unless a proxy in front drops it.
    named = [v for k, v in req.headers if k.replace("_", "-") in OVERRIDE_HEADERS]
    for pairs in (req.query, form_body(req)):
        named.extend(v for k, v in pairs if k in OVERRIDE_PARAMS)
    doc = json_body(req)
    if isinstance(doc, dict):
        named.extend(v for k, v in doc.items() if k in OVERRIDE_PARAMS and isinstance(v, str))
    methods = (m.strip().upper() for value in named for m in value.split(","))
    return tuple(dict.fromkeys(m for m in methods if m.isalpha() and len(m) <= 16 and m != req.method))


def pinned_service(host: str, pinned: Mapping[str, Sequence[str]]) -> str | None:
    """The service `host` is pinned to, if any. Config loaders may call it once with a
    dummy host to have an unknown service name refused early."""
    entry = _PINNED.get(id(pinned))
    if entry is None or entry[0] is not pinned:
        unknown = set(pinned) - set(SERVICES)
        if unknown:
            raise ValueError(f"unknown service {sorted(unknown)} in pinned hosts; known: {list(SERVICES)}")
        if len(_PINNED) >= 8:
            _PINNED.clear()
        entry = _PINNED[id(pinned)] = (pinned, {})
    known = entry[1]
    if host not in known:
        if len(known) >= 4096:
            known.clear()
        known[host] = _pinned_service(host, pinned)
    return known[host]


# A rule set's pins, and the answer for each host seen: every reading of every request asked
# again, and matching ~20 globs was two thirds of reading a plain GET (10 of 15 µs).
_PINNED: dict[int, tuple[Mapping[str, Sequence[str]], dict[str, str | None]]] = {}


def _pinned_service(host: str, pinned: Mapping[str, Sequence[str]]) -> str | None:
    host = host.lower()
    for service in SERVICES:  # a fixed precedence, whatever order the mapping has
        globs = pinned.get(service) or ()
        if isinstance(globs, str):  # a lone glob; iterating it would pin "*" to everything
            globs = (globs,)
        if any(fnmatchcase(host, glob.lower()) for glob in globs):
            return service
    return None


def _forced(service: str, req: RequestView) -> Action:
    if service == "rest":
        return rest.parse(req)
    action = _run(service, PARSERS[service], req, True)
    if action is None:  # e.g. /healthz on a pinned API server: still that service
        action = dataclasses.replace(rest.parse(req), service=service)
    return action


def _run(name: str, parser: Parser, req: RequestView, pinned: bool) -> Action | None:
    try:
        return parser(req, pinned)
    except Exception:  # noqa: BLE001
        # A parser bug must not become a proxy crash, nor let the request pass as
        # something harmless: report it as this service, unparsed, for rules to see.
        return Action(
            service=name,
            action_type="other",
            operation="UNPARSED",
            flags=frozenset({"unparsed", "parser_error"}),
        )
