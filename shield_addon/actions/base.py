"""The two shapes every parser shares: what it reads and what it returns.

Pure data, no mitmproxy and no I/O, so parsers and rules are trivial to test.
"""

from __future__ import annotations

from dataclasses import dataclass, field

ACTION_TYPES = ("read", "create", "update", "delete", "execute", "other")


@dataclass(frozen=True)
class RequestView:
    """The parts of an HTTP request that parsers and rules look at."""

    method: str  # upper case
    scheme: str  # http | https
    host: str  # lower case, no port
    port: int
    path: str  # without the query string, percent-decoding left as sent
    query: tuple[tuple[str, str], ...] = ()
    headers: tuple[tuple[str, str], ...] = ()  # names lower case, in order
    body: bytes = b""  # decoded (Content-Encoding removed)

    def header(self, name: str) -> str | None:
        name = name.lower()
        for k, v in self.headers:
            if k == name:
                return v
        return None

    @property
    def content_type(self) -> str:
        return (self.header("content-type") or "").split(";")[0].strip().lower()


@dataclass(frozen=True)
class Action:
    """What a request does, in the words reviewers and analysts use."""

    service: str
    action_type: str  # one of ACTION_TYPES
    operation: str
    resource_type: str | None = None
    namespace: str | None = None
    resource_name: str | None = None
    tables: tuple[str, ...] = ()
    # statement kinds for sql ("drop", "select", ...), top-level fields for graphql, ...
    statements: tuple[str, ...] = ()
    # facts rules may test, e.g. "delete_without_where", "multi_statement", "no_filter"
    flags: frozenset[str] = field(default_factory=frozenset)
