"""MCP over HTTP: JSON-RPC 2.0 messages, one object or a batch array.

A `tools/call` is what acts on the world, so the tool name is the resource. Tools that
take SQL (`{"sql": "DROP TABLE ..."}`, or SQL under any argument at any depth) also get
the SQL parser's statements, tables and flags, so SQL rules see through the tool call.

What a lenient server would run counts, not what the specification allows: method
names in any case, a missing or numeric `jsonrpc`, batches inside batches, calls
relayed inside another message's params, and keys in any case (Go servers decode
`"Params": {"Name": ...}` into the same fields) are all read. A call is a `delete`
when the tool's name carries a destructive verb (`delete_file`, `resources_delete`,
`dropDatabase`) or a shell command in its arguments destroys or runs fetched code;
SQL quoted in such a command (`psql -c 'DROP TABLE t'`) is read as SQL.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from itertools import islice
from typing import Any

from . import sql
from .base import Action, RequestView
from .common import decodes_as_json, json_body, strictest, unique, words
from .destructive import client_sql, destroys_shell, destructive_name

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
_UPDATE_METHODS = frozenset({"logging/setlevel"})
# Methods naming what they touch: where to find its name, and what to call it.
_RESOURCES = {
    "tools/call": ("name", "tool"),
    "resources/read": ("uri", "resource"),
    "prompts/get": ("name", "prompt"),
}
# Hostile bodies stay cheap: how deep we look for relayed messages and SQL, and how many.
MAX_DEPTH = 8
MAX_MESSAGES = 100
MAX_STRINGS = 200

# Shell commands in a tool's arguments are judged by destructive.py. Only strings a tool
# will run are read as command lines: every string of a shell-like tool, and command-like
# keys of any tool. An email body saying "please delete the old branch" is prose, and
# reading prose as commands would hold every message.
_SHELL_TOOLS = frozenset({"shell", "bash", "sh", "zsh", "terminal", "exec", "execute", "run", "command",
                          "cmd", "powershell", "pwsh", "ssh", "console", "script"})
_SHELL_KEYS = frozenset({"command", "cmd", "commands", "script", "shell", "commandline", "command_line",
                         "bash", "sh", "argv", "exec"})
# Where exec-style tools take a program's operands, beside the program under a command key.
_ARGS_KEYS = frozenset({"args", "arguments", "argv", "argument_list", "parameters", "params", "options", "flags"})
_HTTP_METHOD_KEYS = frozenset({"method", "http_method", "httpmethod", "verb", "request_method"})


# A JSON-RPC request has a "method" key (in some case): a large JSON body without one in
# its bytes, and without escapes that could spell one, need not be walked.
_METHOD_KEY = re.compile(rb'"method"\s*:')


def parse(req: RequestView, pinned: bool = False) -> Action | None:
    body = json_body(req)
    if not isinstance(body, (dict, list)):
        return None
    if (len(req.body) > 4096 and b"\\u" not in req.body and decodes_as_json(req.body)
            and not _METHOD_KEY.search(req.body.lower())):
        return None  # JSON (YAML keys go unquoted) with no key that could be a request's method
    requests = list(_requests(body, 0))[:MAX_MESSAGES]
    if not requests:
        return None  # also a client's replies to the server, which carry no method

    operations: list[str] = []
    types: list[str] = []
    names: list[str] = []
    resource_types: list[str] = []
    embedded: list[Action] = []
    shell = False
    for message in requests:
        method: str = _field(message, "method")
        key = method.strip().lower()
        params = _field(message, "params")
        params = params if isinstance(params, dict) else {}
        name = None
        if key in _RESOURCES:
            field, resource_type = _RESOURCES[key]
            value = _field(params, field)
            name = value.strip() if isinstance(value, str) else None
            resource_types.append(resource_type)
        if name:
            names.append(name)
        operations.append(f"{method} {name}" if name else method)
        kind = _method_type(key)
        if key == "tools/call":
            leaves = list(islice(_strings(_field(params, "arguments"), None, 0), MAX_STRINGS))
            runs = bool(name) and _runs_commands(name)
            commands = [t for k, t in leaves if runs or k in _SHELL_KEYS]
            commands += _argv_lines(_field(params, "arguments"), runs, 0)
            texts = [t for _, t in leaves] + [q for t in commands for q in client_sql(t)]
            found = sql.from_texts([t for t in texts if sql.looks_like_sql(t)])
            if found is not None:
                embedded.append(found)
            destroys = any(destroys_shell(t) for t in commands)
            shell = shell or destroys
            # An HTTP tool (http_request, fetch, an API proxy) told to send a DELETE is
            # the twin of the DELETE itself.
            http_delete = any(k in _HTTP_METHOD_KEYS and t.strip().upper() == "DELETE" for k, t in leaves)
            if destroys or http_delete or (name and destructive_name(name)):
                kind = "delete"
        types.append(kind)

    flags: set[str] = {"batch"} if isinstance(body, list) else set()
    if shell:
        flags.add("shell")
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


def _argv_lines(doc: Any, runs: bool, depth: int) -> list[str]:
    """Command lines a tool assembles from parts, the way exec-style APIs take them:
    {"command": "rm", "args": ["-rf", "/srv"]} and ["rm", "-rf", "/srv"] under a
    command key (or anywhere in a shell tool) run `rm -rf /srv`, though no single
    string says so."""
    out: list[str] = []
    if depth > MAX_DEPTH or not isinstance(doc, dict):
        return out
    program = next((v for k, v in doc.items() if isinstance(v, str) and str(k).lower() in _SHELL_KEYS), "")
    for k, value in doc.items():
        key = str(k).lower()
        if isinstance(value, dict):
            out += _argv_lines(value, runs, depth + 1)
        elif isinstance(value, list) and value and all(isinstance(v, str) for v in value[:MAX_STRINGS]):
            if key in _ARGS_KEYS and program:
                out.append(" ".join([program, *value[:MAX_STRINGS]]))
            elif key in _SHELL_KEYS or key in _ARGS_KEYS and runs:
                out.append(" ".join(value[:MAX_STRINGS]))
        elif isinstance(value, list):
            out += [line for v in value[:MAX_STRINGS] for line in _argv_lines(v, runs, depth + 1)]
    return out


def _requests(doc: Any, depth: int) -> Iterator[dict[str, Any]]:
    """Every JSON-RPC request in a body: top level, batches (nested too), and requests
    relayed inside another message's params."""
    if depth > MAX_DEPTH:
        return
    if isinstance(doc, list):
        for item in doc:
            yield from _requests(item, depth + 1)
    elif isinstance(doc, dict):
        # Keys are folded where a Go server decodes a message (the body or a batch's
        # items), not on every object deep in a large body: that would cost a scan each.
        if _is_request(doc, folded=depth <= 1):
            yield doc
        for value in doc.values():
            if isinstance(value, (dict, list)):
                yield from _requests(value, depth + 1)


def _field(obj: dict[str, Any], key: str) -> Any:
    """obj[key], or else the first key equal to it without case: Go's encoding/json
    (mcp-go, the official Go SDK) fills `Method` and `Params.Name` from any case."""
    if key in obj:
        return obj[key]
    for k, value in obj.items():
        if isinstance(k, str) and len(k) == len(key) and k.lower() == key:
            return value
    return None


def _is_request(message: dict[str, Any], folded: bool = True) -> bool:
    method = _field(message, "method") if folded else message.get("method")
    if not isinstance(method, str):
        return False
    version = _field(message, "jsonrpc")
    if version in ("2.0", 2.0, 2, "2"):
        return True
    # No envelope at all: only a namespaced MCP method with params or an id, so a
    # REST body that happens to have a "method" field is not claimed.
    return version is None and "/" in method and any(isinstance(k, str) and k.lower() in ("params", "id") for k in message)


def _strings(doc: Any, key: str | None, depth: int) -> Iterator[tuple[str | None, str]]:
    """(the key it sits under, lower case; string) for every string in the arguments."""
    if depth > MAX_DEPTH:
        return
    if isinstance(doc, str):
        yield key, doc
    elif isinstance(doc, dict):
        for k, value in doc.items():
            yield from _strings(value, str(k).lower(), depth + 1)
    elif isinstance(doc, list):
        for value in doc:
            yield from _strings(value, key, depth + 1)


def _runs_commands(tool: str) -> bool:
    return any(w in _SHELL_TOOLS for w in words(tool))


def _method_type(method: str) -> str:
    if method == "tools/call":
        return "execute"
    if method in _READ_METHODS:
        return "read"
    if method in _UPDATE_METHODS:
        return "update"
    return "other"  # initialize, notifications/*, and methods we do not know
