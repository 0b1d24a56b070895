"""Small helpers the parsers share: cheap body access and the action-type scale."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from .base import RequestView

# Least to most dangerous. A request that does several things is judged by its worst
# part; execute ranks above update because a procedure or tool can do anything.
STRICTNESS = ("other", "read", "create", "update", "execute", "delete")

_METHOD_TYPES = {
    "GET": "read",
    "HEAD": "read",
    "OPTIONS": "read",
    "POST": "create",
    "PUT": "update",
    "PATCH": "update",
    "DELETE": "delete",
}

# A JSON document starts with an object or array here; checking the first byte keeps
# us from decoding bodies that cannot be JSON (the common case for REST traffic).
_JSON_START = re.compile(rb"(?:\xef\xbb\xbf)?[ \t\r\n]*[\[{]")

# Splits camelCase, PascalCase, snake_case and SHOUT_CASE names into words.
_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")


def request_view(
    method: str,
    url: str,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes | str = b"",
) -> RequestView:
    """A RequestView from a URL, as rule-file tests and `shield rules explain` write them.
    Raises ValueError for a URL urllib cannot split (a bad port, a bad IPv6 literal)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower() or "https"
    return RequestView(
        method=method.upper(),
        scheme=scheme,
        host=(parts.hostname or "").lower(),
        port=parts.port or (80 if scheme == "http" else 443),
        path=parts.path or "/",
        query=tuple(parse_qsl(parts.query, keep_blank_values=True)),
        headers=tuple((k.lower(), v) for k, v in headers),
        body=body.encode() if isinstance(body, str) else body,
    )


def method_type(method: str) -> str:
    return _METHOD_TYPES.get(method.upper(), "other")


def strictest(types: Iterable[str]) -> str:
    return max(types, key=STRICTNESS.index, default="other")


def words(name: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(name)]


def unique(items: Iterable[str]) -> tuple[str, ...]:
    """De-duplicate, keeping first-seen order (rules and reviewers read it in order)."""
    return tuple(dict.fromkeys(items))


def first(pairs: Iterable[tuple[str, str]], name: str) -> str | None:
    for k, v in pairs:
        if k == name:
            return v
    return None


def text_body(req: RequestView) -> str:
    # Invalid UTF-8 must not raise: the replacement character makes the text fail to
    # parse later, which is reported as "unparsed" rather than hidden.
    return req.body.decode("utf-8", "replace")


def json_body(req: RequestView) -> Any:
    """The decoded JSON body, or None when it is absent, not JSON, or hostile."""
    body = req.body
    if not body or not _JSON_START.match(body):
        return None
    return _decode_json(body)


# Several parsers look at the same body; caching the last one means it is decoded once
# per request. Callers must treat the result as read-only.
@functools.lru_cache(maxsize=1)
def _decode_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, RecursionError):  # bad JSON, bad UTF-8, absurd nesting
        return None


def form_body(req: RequestView) -> list[tuple[str, str]]:
    if req.content_type != "application/x-www-form-urlencoded" or not req.body:
        return []
    return parse_qsl(text_body(req), keep_blank_values=True)
