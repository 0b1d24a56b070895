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
     "uninstall", "rm", "del", "unlink", "shred", "nuke", "obliterate", "expunge", "prune", "flushall",
     "flushdb"}
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
# Where exec-style tools take a program's operands, beside the program under a command key.
_ARGS_KEYS = frozenset({"args", "arguments", "argv", "argument_list", "parameters", "params", "options", "flags"})
_HTTP_METHOD_KEYS = frozenset({"method", "http_method", "httpmethod", "verb", "request_method"})
_SEPARATORS = re.compile(r"\|\||&&|[;\n|&]|\$\(|`")
_FETCH_AND_RUN = re.compile(r"\b(?:curl|wget|fetch|iwr|invoke-webrequest)\b[^|;\n]*\|\s*(?:sudo\s+)?(?:ba|z|da|k)?sh\b|"
                            r"\b(?:ba|z)?sh\s+-c\s+[\"']?\$\((?:curl|wget)\b|\b(?:ba|z)?sh\s+<\(\s*(?:curl|wget)\b")
_DESTROYING_PROGRAMS = frozenset({"rm", "rmdir", "shred", "unlink", "dd", "mkfs", "wipefs", "truncate", "fdisk", "srm",
                                  "dropdb", "dropuser", "rimraf",
                                  # Windows cmd and PowerShell (case-insensitive there too)
                                  "del", "erase", "rd", "remove-item", "ri", "clear-content", "format",
                                  "remove-itemproperty", "clear-disk", "format-volume"})
# Deletes written in the script a command line runs: python -c "shutil.rmtree(...)",
# node -e "fs.rmSync(...)", ruby -e "FileUtils.rm_rf(...)"; git clean -f deletes every
# untracked file; scaling to 0 replicas takes a service down (kubectl scale, ecs
# --desired-count 0), the twin of replicas: 0 in the Kubernetes pack.
_SCRIPT_DESTROYS = re.compile(
    r"\bshutil\.rmtree\b|\bos\.(?:remove|unlink|rmdir|removedirs)\s*\(|\bfs(?:\.promises)?\.(?:rm|rmdir|unlink)\s*\(|\.(?:rm|rmdir|unlink)Sync\s*\(|"
    r"\bFileUtils\.(?:rm|rm_r|rm_rf|rmtree|remove_dir|remove_entry)\b|\bFile\.delete\b|\bPath\([^)]*\)\.unlink\b|"
    r"\bgit\s+clean\b[^;\n|&]*\s-[a-zA-Z]*f|"
    r"(?:--replicas|--desired-count|--desired-capacity|--max-size)[=\s]+0(?![\d.])")
# Options that make a harmless verb destroy: find -delete, rsync/aws s3 sync --delete,
# terraform apply -destroy, apt-get --purge.
_DESTROYING_OPTIONS = ("--delete", "--destroy", "--purge")
_DESTROYING_FLAGS = frozenset({"-delete", "-destroy"})
# Wiping a datastore from its own client: redis-cli FLUSHALL, mongosh db.dropDatabase().
_DATASTORE_WIPE = re.compile(r"(?i)\bflush(?:all|db)\b|\.drop(?:database)?\(\s*\)")
# A command line handed to another shell runs as one: bash -c 'rm -rf x', eval "...".
_NESTED = re.compile(r"(?:\b(?:ba|z|da|k)?sh\s+(?:-[a-z]*\s+)*?-[a-z]*c|\beval)\s+(['\"])(.+?)\1", re.S)
# Quotes and escapes around a program's name run the same program: "rm", \rm, 'rm'.
_QUOTING = re.compile(r"[\"'\\]")
# SQL handed to a database client: psql -c '...', mysql -e "...", sqlite3 db "...", or a
# here-document. Only beside a client: `grep "DROP TABLE" migrations/` searches text.
_SQL_CLIENT = re.compile(r"(?i)(?<![\w.-])(?:psql|pgcli|mysql|mariadb|mycli|sqlite3?|sqlcmd|osql|isql|sqlplus|"
                         r"clickhouse(?:-client)?|duckdb|snowsql|bq|cockroach|usql|trino|presto|spark-sql|beeline|"
                         r"hive|impala-shell|vsql|dbsqlcli|databricks|cqlsh|mongosh|mongo)(?![\w.-])")
_QUOTED = re.compile(r"'([^']{6,})'|\"([^\"]{6,})\"")
_PREFIXES = frozenset({"sudo", "env", "nohup", "time", "exec", "command", "doas"})
_CLI_VERBS = _DESTRUCTIVE | {"rmi", "prune", "drain", "destroy", "delete-objects", "rb", "uninstall", "reset"}
_CLI_VERB_PREFIXES = ("delete-", "terminate-", "remove-", "deregister-", "destroy-", "drop-")
# Force pushes and remote deletes: --force, +refspec, --delete/-d, :branch, --mirror.
_FORCE_PUSH = re.compile(r"\bgit\s+push\b[^;\n|&]*(?:\s--force\b|\s-f\b|\s--force-with-lease\b|\s--delete\b|\s-d\b|"
                         r"\s--mirror\b|\s\+\S|\s:\S)")


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


def destructive_name(name: str) -> bool:
    parts = words(name)
    return bool(parts) and parts[0] not in _READ_VERBS and any(p in _DESTRUCTIVE for p in parts)


def destroys_shell(text: str) -> bool:
    """Whether a command line deletes, wipes, force-pushes or runs code fetched from the
    network. Over-reports (`rm` of a temp file counts): a reviewer sees it once."""
    if len(text) > 10_000 or not any(c.isspace() for c in text.strip()):
        return False  # one bare word is a name, an id, or a program run without operands
    if (_FETCH_AND_RUN.search(text) or _FORCE_PUSH.search(text) or _DATASTORE_WIPE.search(text)
            or _SCRIPT_DESTROYS.search(text)):
        return True
    if any(destroys_shell(m.group(2)) for m in _NESTED.finditer(text)):
        return True  # the inner line is shorter than text, so the recursion ends
    return any(_destroys(segment.split()) for segment in _SEPARATORS.split(text))


def client_sql(command: str) -> list[str]:
    """What a command line hands a database client to run: its quoted strings (one level
    of nesting too: bash -c "psql -c 'DROP ...'") and a here-document's lines."""
    if len(command) > 10_000 or not _SQL_CLIENT.search(command):
        return []
    outer = [a or b for a, b in _QUOTED.findall(command)]
    inner = [a or b for text in outer for a, b in _QUOTED.findall(text)]
    heredoc = []
    if "<<" in command and "\n" in command:
        lines = command.split("\n", 1)[1].rstrip().rsplit("\n", 1)
        # its last line closes it (SQL, EOF) when it is one bare word
        closed = len(lines) == 2 and lines[1].strip().isidentifier()
        heredoc = [lines[0] if closed else "\n".join(lines)]
    return outer + inner + heredoc


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


def _destroys(argv: list[str]) -> bool:
    while argv and (argv[0] in _PREFIXES or "=" in argv[0] or argv[0].startswith("-")):
        argv = argv[1:]  # sudo, env FOO=1, nohup ... run the next word
    if not argv:
        return False
    program = _QUOTING.sub("", argv[0]).rsplit("/", 1)[-1].lower()
    if program in _DESTROYING_PROGRAMS or program.startswith("mkfs"):
        return True
    if any(w in _DESTROYING_FLAGS or w.startswith(_DESTROYING_OPTIONS) for w in argv[1:]):
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
