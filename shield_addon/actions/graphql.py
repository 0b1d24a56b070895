"""GraphQL documents, parsed with graphql-core: operation type and top-level fields.

Top-level fields are what a GraphQL server executes, so they are what we classify:
aliases are ignored (`safe: deleteRepository` is still deleteRepository) and fragment
spreads at the top level are followed.

Documents are found where servers take them: a JSON body or a batch array, a JSON
string holding that body, a form body, `application/graphql`, `?query=` (also on a
POST), the `operations` field of a multipart upload (the GraphQL multipart request
spec), and the `payload` of a WebSocket message (graphql-ws `subscribe`,
subscriptions-transport-ws `start`), which a server runs whatever its operation type.
A persisted query (Apollo APQ's hash, Relay's `doc_id`) sends no document: the server
runs a stored one we cannot see, so only its operationName can tell what it does
(`DeleteUser` is a delete; a name that says nothing stays `other`, flagged `persisted`).
"""

from __future__ import annotations

import json
import re
from typing import Any

import graphql as graphql_core
from graphql.language import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
)

from .base import Action, RequestView
from .common import first, form_body, json_body, strictest, text_body, unique, words

# graphql-core takes about 15 us a token. Per request we parse at most MAX_CHARS of
# documents, each of at most MAX_TOKENS tokens (about 0.3 s in all); past that the
# request is reported as "too_large" rather than stalling the proxy.
MAX_CHARS = 20_000
MAX_TOKENS = 10_000

_DELETE = frozenset({"delete", "remove", "destroy", "drop", "purge", "erase", "wipe", "truncate", "terminate",
                     "uninstall"})
_CREATE = frozenset({"create", "add", "insert"})
_UPDATE = frozenset({"update", "set", "edit", "patch", "merge", "upsert"})
# Words that only say how much or how: bulkDeleteProducts, userDeleteMany and
# deleteUserById delete like deleteUser, so the verb is looked for past them.
_MODIFIERS = frozenset({"bulk", "batch", "mass", "multi", "multiple", "force", "hard", "soft", "permanently", "many",
                        "all", "one", "by", "id", "ids", "pk", "async"})
# The multipart spec puts `operations` first; a part is looked for in this much of the body.
_MULTIPART_SCAN = 65_536
# What an executable document starts with, after ignored commas, spaces and comments.
# Possessive quantifiers: no backtracking, so no catastrophic cases on hostile text.
_START = re.compile(r"(?:[\s,\ufeff]|#[^\n]*+)*+(?:\{|(?:query|mutation|subscription|fragment)\b)")


def parse(req: RequestView, pinned: bool = False) -> Action | None:
    if not req.body and not any(k in _URL_KEYS for k, _ in req.query):
        return None  # the common case, decided before any header is looked at
    ct = req.content_type
    endpoint = pinned or ct == "application/graphql" or req.path.rstrip("/").endswith("/graphql")
    docs = _documents(req, ct)
    # Outside a GraphQL endpoint, a "query" field is only parsed when it reads like a
    # GraphQL document, so search boxes and SQL cost nothing here.
    docs = [d for d in docs if endpoint or looks_like_graphql(d[0])]
    if not docs:
        return _persisted(req)

    descriptions: list[str] = []
    types: list[str] = []
    fields: list[str] = []
    unparsed = too_large = False
    budget = MAX_CHARS
    for text, operation_name in docs:
        budget -= len(text)
        operations = _operations(text, operation_name) if budget >= 0 else None
        if operations is None:
            unparsed = True
            too_large = too_large or budget < 0
            continue
        for kind, names in operations:
            descriptions.append(f"{kind} {','.join(names)}".rstrip())
            types.append(_action_type(kind, names))
            fields.extend(names)

    flags = {"unparsed"} if unparsed else set()
    if too_large:
        flags.add("too_large")
    if len(descriptions) > 1:
        flags.add("multi_operation")
    if unparsed:
        descriptions.append("UNPARSED")
        types.append("other")
    return Action(
        service="graphql",
        action_type=strictest(types),
        operation=";".join(descriptions),
        statements=unique(fields),
        flags=frozenset(flags),
    )


def _operations(text: str, operation_name: str | None) -> list[tuple[str, list[str]]] | None:
    """(type, top-level fields) of each operation the server would run, or None when
    the document does not parse or holds nothing to run (only fragments or schema)."""
    try:
        document = graphql_core.parse(text, no_location=True, max_tokens=MAX_TOKENS)
    except (graphql_core.GraphQLError, RecursionError, IndexError, ValueError):
        return None  # graphql-core raises IndexError on a string cut inside an escape
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    # The server runs only the named operation; if the name matches none it refuses
    # the request, and then counting them all is the safe side.
    named = [o for o in operations if operation_name and o.name and o.name.value == operation_name]
    return [
        (o.operation.value, list(unique(_top_fields(o.selection_set, fragments, set())
                                        + (_namespaced(o.selection_set, fragments, "", 0)
                                           if o.operation.value == "mutation" else []))))
        for o in named or operations
    ] or None


# Namespaced mutations put the verb one level down: mutation { users { delete(id: 1) } }.
# A nested field is read as a mutation when it takes arguments or is a bare delete verb;
# the rest of a payload's selection (deletedAt, removedCount) is what the answer shows.
_NAMESPACE_DEPTH = 3


def _namespaced(
    selection_set: SelectionSetNode | None, fragments: dict[str, FragmentDefinitionNode], prefix: str, depth: int
) -> list[str]:
    if selection_set is None or depth > _NAMESPACE_DEPTH:
        return []
    names: list[str] = []
    for selection in _fields(selection_set, fragments, set()):
        name = f"{prefix}.{selection.name.value}" if prefix else selection.name.value
        if depth and (selection.arguments or _field_type(selection.name.value) == "delete" and (
                len([w for w in words(selection.name.value) if w not in _MODIFIERS]) == 1)):
            names.append(name)
        names += _namespaced(selection.selection_set, fragments, name, depth + 1)
    return names


def _fields(
    selection_set: SelectionSetNode, fragments: dict[str, FragmentDefinitionNode], seen: set[str]
) -> list[FieldNode]:
    out: list[FieldNode] = []
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode):
            out.append(selection)
        elif isinstance(selection, InlineFragmentNode):
            out += _fields(selection.selection_set, fragments, seen)
        elif isinstance(selection, FragmentSpreadNode):
            name = selection.name.value
            if name in fragments and name not in seen:
                seen.add(name)
                out += _fields(fragments[name].selection_set, fragments, seen)
    return out


def looks_like_graphql(text: str) -> bool:
    return _START.match(text) is not None


def _documents(req: RequestView, ct: str) -> list[tuple[str, str | None]]:
    """(document, operationName) pairs: a JSON body, an Apollo-style batch, a raw
    application/graphql body, a form body, or GraphQL over GET (?query=...). An
    operationName in the URL counts when the body names none (servers merge them)."""
    url_name = first(req.query, "operationName")
    if ct == "application/graphql":
        return [(text_body(req), url_name)]
    items = _items(req)
    docs = [_document(item, url_name) for item in items]
    found = [d for d in docs if d is not None]
    if found:
        return found
    query = first(req.query, "query")
    return [(query, url_name)] if query else []


def _items(req: RequestView) -> list[Any]:
    """The request objects of a body: JSON (one level of JSON-in-a-string unwrapped,
    as some clients double-encode) or a form."""
    body = json_body(req)
    if body is None and req.content_type == "multipart/form-data":
        body = _multipart_operations(req)
    if body is None and req.body[:1] == b'"' and len(req.body) <= 2 * MAX_CHARS:
        body = _loads(text_body(req))  # JSON's only scalar worth unwrapping: a string
    if isinstance(body, str) and len(body) <= 2 * MAX_CHARS:
        body = _loads(body)
    if body is None:
        form = form_body(req)
        body = dict(form) if form else None
    items = body if isinstance(body, list) else [body]
    return [_unwrap(item) for item in items]


def _unwrap(item: Any) -> Any:
    """A WebSocket protocol message's operation ({"type": "subscribe", "payload": {...}})."""
    payload = _field(item, "payload") if isinstance(item, dict) and _field(item, "query") is None else None
    return payload if isinstance(payload, dict) else item


_BOUNDARY = re.compile(r'boundary="?([^";,\s]+)"?', re.I)
_OPERATIONS_PART = re.compile(rb'name="?operations"?[^\r\n]{0,200}\r?\n(?:[^\r\n]{1,200}\r?\n){0,8}\r?\n')


def _multipart_operations(req: RequestView) -> Any:
    """The decoded `operations` field of a multipart/form-data body, if any."""
    found = _BOUNDARY.search(req.header("content-type") or "")
    head = req.body[:_MULTIPART_SCAN]
    part = _OPERATIONS_PART.search(head) if found else None
    if part is None:
        return None
    end = head.find(b"--" + found.group(1).encode(), part.end())
    value = head[part.end():end if end >= 0 else len(head)]
    return _loads(value.decode("utf-8", "replace").strip())


def _loads(text: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def _document(item: Any, url_name: str | None) -> tuple[str, str | None] | None:
    if not isinstance(item, dict):
        return None
    query, name = _field(item, "query"), _field(item, "operationName")
    if not isinstance(query, str):
        return None
    return query, name if isinstance(name, str) else url_name


def _field(obj: dict[str, Any], key: str) -> Any:
    """obj[key], or else the first key equal to it without case: Go servers (gqlgen,
    graph-gophers) decode `{"Query": ...}` with encoding/json, which folds case."""
    if key in obj:
        return obj[key]
    folded = key.lower()
    for k, value in obj.items():
        if isinstance(k, str) and len(k) == len(key) and k.lower() == folded:
            return value
    return None


# Where persisted-query protocols put the stored document's id: Apollo APQ's
# extensions.persistedQuery, Relay's doc_id / documentId, and plain `id`.
_PERSISTED_KEYS = ("doc_id", "documentId", "id", "queryId")
# Query parameters that can carry a GraphQL operation on a bodiless request.
_URL_KEYS = frozenset({"query", "extensions", "operationName", "doc_id", "documentId"})


def _persisted(req: RequestView) -> Action | None:
    names: list[str] = []
    for item in _items(req) + [_url_item(req)]:
        if not isinstance(item, dict) or not _is_persisted(item):
            continue
        name = item.get("operationName")
        names.append(name if isinstance(name, str) else "")
    if not names:
        return None
    types = [_persisted_type(name) for name in names]
    return Action(
        service="graphql",
        action_type=strictest(types),
        operation=";".join(f"persisted {name}".rstrip() for name in names),
        statements=unique(n for n in names if n),
        flags=frozenset({"persisted"}),
    )


def _url_item(req: RequestView) -> dict[str, Any]:
    item: dict[str, Any] = {k: v for k, v in req.query if k in ("operationName", *_PERSISTED_KEYS)}
    extensions = first(req.query, "extensions")
    if extensions:
        item["extensions"] = _loads(extensions)
    return item


def _is_persisted(item: dict[str, Any]) -> bool:
    extensions = item.get("extensions")
    if isinstance(extensions, dict) and isinstance(extensions.get("persistedQuery"), dict):
        return True
    # Relay and others: a document id beside an operationName, and no document.
    return isinstance(item.get("operationName"), str) and any(isinstance(item.get(k), (str, int)) for k in _PERSISTED_KEYS)


def _persisted_type(name: str) -> str:
    # The name is the client's label for the stored operation (DeleteUser,
    # RemoveRepositoryMutation); a delete verb in it is the only hint we get.
    parts = [w for w in words(name) if w not in ("mutation", "query")]
    if any(w in _DELETE for w in parts):
        return "delete"
    return "other"


def _top_fields(
    selection_set: SelectionSetNode, fragments: dict[str, FragmentDefinitionNode], seen: set[str]
) -> list[str]:
    return [field.name.value for field in _fields(selection_set, fragments, seen)]


def _action_type(kind: str, fields: list[str]) -> str:
    if kind != "mutation":
        return "read"  # queries and subscriptions only read
    return strictest(_field_type(f) for f in fields) if fields else "execute"


def _field_type(field: str) -> str:
    # The verb leads (deleteRepository, remove_label) or trails (Shopify's productDelete).
    parts = [w for w in words(field) if w not in _MODIFIERS] or words(field)
    for word in (parts[0], parts[-1]) if parts else ():
        if word in _DELETE:
            return "delete"
        if word in _CREATE:
            return "create"
        if word in _UPDATE:
            return "update"
    return "execute"
