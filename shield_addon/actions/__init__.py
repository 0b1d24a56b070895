"""Request -> Action: which service a request talks to and what it does there.

Like mitmproxy's proxyauth implementations, each service is one small module behind
one interface, `parse(req, pinned) -> Action | None`. Without a pin they are tried in
a fixed order and the first answer wins; `rest` answers when none does. Everything
here is pure: no mitmproxy, no I/O.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from fnmatch import fnmatchcase

from . import aws, graphql, kubernetes, mcp, postgrest, rest, sql
from .base import ACTION_TYPES, Action, RequestView
from .common import request_view

__all__ = [
    "ACTION_TYPES",
    "PARSERS",
    "SERVICES",
    "Action",
    "RequestView",
    "parse",
    "pinned_service",
    "request_view",
]

Parser = Callable[[RequestView, bool], Action | None]

# The order settles requests that more than one parser could claim:
# - kubernetes looks at the path alone, the cheapest test, and its paths are distinctive;
# - mcp: a JSON-RPC 2.0 envelope is unambiguous (and its tool calls may carry SQL);
# - graphql before sql: both read a JSON "query" field, but a GraphQL document never
#   parses as SQL statements while sqlglot does read `{ a }` as an expression;
# - sql before aws: SQL sent to AWS data APIs (RDS Data, Redshift Data) is what matters;
# - postgrest last: /rest/v1/ paths are specific, and SQL in an RPC body is worth more.
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
    """What `req` does. `pinned` maps a service name to host globs (case-insensitive)
    whose requests that service's parser must read, e.g. {"kubernetes": ["*.k8s.internal"]}.

    Never raises on anything in the request; raises ValueError for an unknown service
    name in `pinned`, which is configuration, not traffic.
    """
    service = pinned_service(req.host, pinned) if pinned else None
    if service is not None:
        return _forced(service, req)
    for name, parser in PARSERS.items():
        action = _run(name, parser, req, False)
        if action is not None:
            return action
    return rest.parse(req)


def pinned_service(host: str, pinned: Mapping[str, Sequence[str]]) -> str | None:
    """The service `host` is pinned to, if any. Config loaders may call it once with a
    dummy host to have an unknown service name refused early."""
    unknown = set(pinned) - set(SERVICES)
    if unknown:
        raise ValueError(f"unknown service {sorted(unknown)} in pinned hosts; known: {list(SERVICES)}")
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
