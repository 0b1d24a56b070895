"""MCP over HTTP: JSON-RPC 2.0 messages, one object or a batch array.

A `tools/call` is what acts on the world, so the tool name is the resource. Tools that
take SQL (`{"sql": "DROP TABLE ..."}`, or SQL under any argument at any depth) also get
the SQL parser's statements, tables and flags, so SQL rules see through the tool call.

What a lenient server would run counts, not what the specification allows: method
names in any case, a missing or numeric `jsonrpc`, batches inside batches and calls
relayed inside another message's params are all read. A call is a `delete` when the
tool's name carries a destructive verb (`delete_file`, `resources_delete`,
`dropDatabase`) or a shell command in its arguments destroys or runs fetched code.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from . import sql
from .base import Action, RequestView
from .common import json_body, strictest, unique, words

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

# A word of a tool's name that makes the call destroy something, wherever it sits:
# verb first (delete_file), verb last (resources_delete) or camelCase (dropDatabase).
_DESTRUCTIVE = frozenset(
    {"delete", "remove", "destroy", "drop", "purge", "truncate", "terminate", "wipe", "erase",
     "uninstall", "rm", "del", "unlink", "shred", "nuke", "obliterate"}
)
# ...unless the name leads with a read (list_deleted_items, get_delete_status).
_READ_VERBS = frozenset({"list", "get", "read", "search", "find", "describe", "show", "count", "fetch", "query"})

# Shell commands in a tool's arguments. Not SQL, so no grammar to borrow: we look at
# each simple command's program and its first few words, which is where every CLI puts
# its verb (kubectl delete, aws s3 rm, terraform destroy, git push --force).
# Only strings a tool will run are read as command lines: every string of a shell-like
# tool, and command-like keys of any tool. An email body saying "please delete the old
# branch" is prose, and reading prose as commands would hold every message.
_SHELL_TOOLS = frozenset({"shell", "bash", "sh", "zsh", "terminal", "exec", "execute", "run", "command",
                          "cmd", "powershell", "pwsh", "ssh", "console", "script"})
_SHELL_KEYS = frozenset({"command", "cmd", "commands", "script", "shell", "commandline", "command_line",
                         "bash", "sh", "argv", "exec"})
_SEPARATORS = re.compile(r"\|\||&&|[;\n|&]|\$\(|`")
_FETCH_AND_RUN = re.compile(r"\b(?:curl|wget|fetch|iwr|invoke-webrequest)\b[^|;\n]*\|\s*(?:sudo\s+)?(?:ba|z|da|k)?sh\b|"
                            r"\b(?:ba|z)?sh\s+-c\s+[\"']?\$\((?:curl|wget)\b|\b(?:ba|z)?sh\s+<\(\s*(?:curl|wget)\b")
_DESTROYING_PROGRAMS = frozenset({"rm", "rmdir", "shred", "unlink", "dd", "mkfs", "wipefs", "truncate", "fdisk", "srm"})
_PREFIXES = frozenset({"sudo", "env", "nohup", "time", "exec", "command", "doas"})
_CLI_VERBS = _DESTRUCTIVE | {"rmi", "prune", "drain", "destroy", "delete-objects", "rb", "uninstall", "reset"}
_CLI_VERB_PREFIXES = ("delete-", "terminate-", "remove-", "deregister-", "destroy-", "drop-")
_FORCE_PUSH = re.compile(r"\bgit\s+push\b[^;\n|&]*(?:\s--force\b|\s-f\b|\s--force-with-lease\b|\s--delete\b|\s\+\S)")


def parse(req: RequestView, pinned: bool = False) -> Action | None:
    body = json_body(req)
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
        method: str = message["method"]
        key = method.strip().lower()
        params = message.get("params") if isinstance(message.get("params"), dict) else {}
        name = None
        if key in _RESOURCES:
            field, resource_type = _RESOURCES[key]
            name = params.get(field).strip() if isinstance(params.get(field), str) else None
            resource_types.append(resource_type)
        if name:
            names.append(name)
        operations.append(f"{method} {name}" if name else method)
        kind = _method_type(key)
        if key == "tools/call":
            leaves = list(_strings(params.get("arguments"), None, 0))[:MAX_STRINGS]
            found = sql.from_texts([t for _, t in leaves if sql.looks_like_sql(t)])
            if found is not None:
                embedded.append(found)
            runs = bool(name) and _runs_commands(name)
            destroys = any(destroys_shell(t) for k, t in leaves if runs or k in _SHELL_KEYS)
            shell = shell or destroys
            if destroys or (name and destructive_name(name)):
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


def destructive_name(name: str) -> bool:
    parts = words(name)
    return bool(parts) and parts[0] not in _READ_VERBS and any(p in _DESTRUCTIVE for p in parts)


def destroys_shell(text: str) -> bool:
    """Whether a command line deletes, wipes, force-pushes or runs code fetched from the
    network. Over-reports (`rm` of a temp file counts): a reviewer sees it once."""
    if len(text) > 10_000 or not any(c.isspace() for c in text.strip()):
        return False  # one bare word is a name, an id, or a program run without operands
    if _FETCH_AND_RUN.search(text) or _FORCE_PUSH.search(text):
        return True
    return any(_destroys(segment.split()) for segment in _SEPARATORS.split(text))


def _destroys(argv: list[str]) -> bool:
    while argv and (argv[0] in _PREFIXES or "=" in argv[0] or argv[0].startswith("-")):
        argv = argv[1:]  # sudo, env FOO=1, nohup ... run the next word
    if not argv:
        return False
    program = argv[0].rsplit("/", 1)[-1].lower()
    if program in _DESTROYING_PROGRAMS or program.startswith("mkfs"):
        return True
    verbs = [w.lower() for w in argv[1:6] if not w.startswith("-")]
    return any(v in _CLI_VERBS or v.startswith(_CLI_VERB_PREFIXES) for v in verbs)


def _requests(doc: Any, depth: int) -> Iterator[dict[str, Any]]:
    """Every JSON-RPC request in a body: top level, batches (nested too), and requests
    relayed inside another message's params."""
    if depth > MAX_DEPTH:
        return
    if isinstance(doc, list):
        for item in doc:
            yield from _requests(item, depth + 1)
    elif isinstance(doc, dict):
        if _is_request(doc):
            yield doc
        for value in doc.values():
            if isinstance(value, (dict, list)):
                yield from _requests(value, depth + 1)


def _is_request(message: dict[str, Any]) -> bool:
    method = message.get("method")
    if not isinstance(method, str):
        return False
    version = message.get("jsonrpc")
    if version in ("2.0", 2.0, 2, "2"):
        return True
    # No envelope at all: only a namespaced MCP method with params or an id, so a
    # REST body that happens to have a "method" field is not claimed.
    return version is None and "/" in method and ("params" in message or "id" in message)


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
