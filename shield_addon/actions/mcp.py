"""MCP over HTTP: JSON-RPC 2.0 messages, one object or a batch array.

A `tools/call` is what acts on the world, so the tool name is the resource. Tools that
take SQL (`{"sql": "DROP TABLE ..."}`) also get the SQL parser's statements, tables and
flags, so SQL rules see through the tool call.
"""

from __future__ import annotations

from . import sql
from .base import Action, RequestView
from .common import json_body, strictest, unique

_READ_METHODS = frozenset(
    {
        "ping",
        "tools/list",
        "resources/list",
        "resources/templates/list",
        "resources/read",
        "resources/subscribe",
        "resources/unsubscribe",
        "prompts/list",
        "prompts/get",
        "completion/complete",
    }
)
_UPDATE_METHODS = frozenset({"logging/setLevel"})
# Methods naming what they touch: where to find its name, and what to call it.
_RESOURCES = {
    "tools/call": ("name", "tool"),
    "resources/read": ("uri", "resource"),
    "prompts/get": ("name", "prompt"),
}


def parse(req: RequestView, pinned: bool = False) -> Action | None:
    body = json_body(req)
    messages = body if isinstance(body, list) else [body]
    requests = [m for m in messages if _is_request(m)]
    if not requests:
        return None  # also a client's replies to the server, which carry no method

    operations: list[str] = []
    types: list[str] = []
    names: list[str] = []
    resource_types: list[str] = []
    embedded: list[Action] = []
    for message in requests:
        method: str = message["method"]
        params = message.get("params") if isinstance(message.get("params"), dict) else {}
        name = None
        if method in _RESOURCES:
            field, resource_type = _RESOURCES[method]
            name = params.get(field) if isinstance(params.get(field), str) else None
            resource_types.append(resource_type)
        if name:
            names.append(name)
        operations.append(f"{method} {name}" if name else method)
        types.append(_method_type(method))
        if method == "tools/call":
            found = sql.from_json(params.get("arguments"))
            if found is not None:
                embedded.append(found)

    flags: set[str] = {"batch"} if isinstance(body, list) else set()
    for found in embedded:
        flags |= found.flags | {"sql"}
    kinds = unique(resource_types)
    return Action(
        service="mcp",
        action_type=strictest(types),
        operation=";".join(operations),
        resource_type=kinds[0] if len(kinds) == 1 else None,
        resource_name=",".join(unique(names)) or None,
        tables=unique(t for found in embedded for t in found.tables),
        statements=unique(s for found in embedded for s in found.statements),
        flags=frozenset(flags),
    )


def _is_request(message: object) -> bool:
    return (
        isinstance(message, dict)
        and message.get("jsonrpc") == "2.0"
        and isinstance(message.get("method"), str)
    )


def _method_type(method: str) -> str:
    if method == "tools/call":
        return "execute"
    if method in _READ_METHODS:
        return "read"
    if method in _UPDATE_METHODS:
        return "update"
    return "other"  # initialize, notifications/*, and methods we do not know
