"""What destroys: a destructive verb in a name, a command line that deletes, wipes,
force-pushes or runs code fetched from the network, and the SQL a command line hands a
database client. Shared by the parsers that meet names and command lines (MCP tools, AWS
SSM/ECS commands, PostgREST functions). Pure: no mitmproxy, no I/O.
"""

from __future__ import annotations

import re

from .common import words

# A word of a tool's name that makes the call destroy something, wherever it sits:
# verb first (delete_file), verb last (resources_delete) or camelCase (dropDatabase).
_DESTRUCTIVE = frozenset(
    {"delete", "remove", "destroy", "drop", "purge", "truncate", "terminate", "wipe", "erase",
     "uninstall", "rm", "del", "unlink", "shred", "nuke", "obliterate", "expunge", "prune", "flushall",
     "flushdb"}
)
# ...unless the name leads with a read (list_deleted_items, get_delete_status).
_READ_VERBS = frozenset({"list", "get", "read", "search", "find", "describe", "show", "count", "fetch", "query"})

# Shell commands: not SQL, so no grammar to borrow: we look at each simple command's
# program and its first few words, which is where every CLI puts its verb (kubectl
# delete, aws s3 rm, terraform destroy, git push --force).
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
