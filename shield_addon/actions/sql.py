"""SQL carried over HTTP, classified with a real parser (sqlglot), never with regexes.

Comments, odd casing and a DROP after a SELECT are the parser's problem, not ours. What
we add is suspicion: dialects disagree about quotes, escapes and comments, so text
with such characters is read in several dialects and their findings are united; a
guard should over-report what a statement might do rather than miss it.

Text nobody declared as SQL (a JSON `query` field, a text/plain body) is often prose,
and sqlglot reads prose leniently: "drop shipping suppliers" becomes a DROP command,
"delete my account" a DELETE from table `my`. Such text counts as SQL only when a
statement in it has the keywords its kind cannot do without (DROP TABLE ..., DELETE
FROM ..., UPDATE ... SET ...); see `_real` and `_shaped`.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Iterator
from typing import Any

import sqlglot
from sqlglot import exp

from .base import Action, RequestView
from .common import json_body, strictest, text_body, unique

# sqlglot is pure Python, about 4 us a character for each dialect tried. Past
# MAX_CHARS of SQL in one request we stop and say so ("too_large") rather than stall
# the proxy (big bulk INSERTs land there too; rules can allow them), and all dialect
# attempts together may read WORK characters: at most about 0.3 s per request.
MAX_CHARS = 20_000
WORK = 4 * MAX_CHARS  # enough for the four primary dialects on any text we accept

# read=None is sqlglot's own permissive dialect.
_PRIMARY = (None, "postgres", "mysql", "tsql")
_FALLBACK = ("sqlite", "bigquery", "snowflake")
# Backslash escapes, `#` and `--` comments, nested /* */, $$ strings and the three
# identifier quotes are where dialects split one text into different statements.
_AMBIGUOUS = re.compile(r"[\\#$`\[\"]|/\*|--")

_CONTENT_TYPES = frozenset({"application/sql", "application/x-sql", "text/sql", "text/x-sql"})
_JSON_KEYS = frozenset({"query", "sql", "statement"})
_PINNED_JSON_DEPTH = 4  # a pinned host may wrap SQL deeper, e.g. {"args": {"sql": ...}}

# sqlglot expression key -> statement kind. Anything else at the top level (a bare
# column, a literal, GraphQL read as a struct...) means the text is not SQL to us.
_KINDS = {
    "select": "select",
    "union": "select",
    "except": "select",
    "intersect": "select",
    "subquery": "select",
    "values": "select",
    "insert": "insert",
    "update": "update",
    "delete": "delete",
    "merge": "merge",
    "drop": "drop",
    "truncatetable": "truncate",
    "create": "create",
    "alter": "alter",
    "altertable": "alter",  # older sqlglot
    "grant": "grant",
    "revoke": "revoke",
    "copy": "copy",
    "describe": "describe",
    "show": "show",
    "use": "use",
    "set": "set",
    "transaction": "begin",
    "commit": "commit",
    "rollback": "rollback",
    "pragma": "pragma",
    "analyze": "analyze",
    "execute": "execute",
}
# Data-changing statements that count even when nested, e.g. Postgres'
# `WITH d AS (DELETE ... RETURNING *) SELECT ...`.
_NESTED = frozenset({"insert", "update", "delete", "merge"})

_TYPES = {
    "select": "read",
    "show": "read",
    "explain": "read",
    "describe": "read",
    "desc": "read",
    "analyze": "read",
    "insert": "create",
    "create": "create",
    "update": "update",
    "merge": "update",
    "alter": "update",
    "grant": "update",
    "revoke": "update",
    "replace": "update",
    "rename": "update",
    "set": "update",  # SET ROLE, SET session_replication_role: changes what follows
    "delete": "delete",
    "drop": "delete",
    "truncate": "delete",
    "begin": "other",
    "start": "other",
    "commit": "other",
    "rollback": "other",
    "savepoint": "other",
    "release": "other",
    "use": "other",
    "unparsed": "other",
}  # anything else (call, exec, copy, do, vacuum, pragma, ...) is "execute"

# First word of statements we would rather report as unparsed than let pass as REST.
_SQL_WORDS = frozenset({
    "select", "with", "insert", "update", "delete", "merge", "drop", "truncate", "create", "alter",
    "grant", "revoke", "copy", "describe", "desc", "show", "use", "set", "begin", "start", "commit",
    "rollback", "savepoint", "release", "pragma", "analyze", "explain", "call", "exec", "execute",
    "replace", "upsert", "vacuum", "lock", "do", "values", "table", "rename", "comment", "prepare",
    "deallocate", "declare", "load", "handler", "reindex", "cluster", "refresh", "unload", "attach",
    "detach", "backup", "restore", "kill", "shutdown",
})
# Possessive quantifiers: no backtracking, so no catastrophic cases on hostile text.
_LEADING_NOISE = re.compile(r"(?:\s|--[^\n]*+|#[^\n]*+|/\*.*?(?:\*/|\Z)|[(;\ufeff])*+", re.DOTALL)
_FIRST_WORD = re.compile(r"[A-Za-z_]+")
_EXPLAIN_OPTIONS = re.compile(
    r"(?:\s|\([^)]*\)|ANALY[SZ]E\b|VERBOSE\b|QUERY\s+PLAN\b|PLAN\b|FOR\b|EXTENDED\b"
    r"|FORMAT\s*=?\s*\w+)*+",
    re.IGNORECASE,
)
_RUNS = re.compile(r"ANALY[SZ]E", re.IGNORECASE)
_WORDS = re.compile(r"[A-Za-z_]+")

# Undeclared text starting with these words must also hold all the words of one of
# their sets, anywhere: comments and strings may supply them too, which errs towards
# SQL. Other kinds, apart from DDL, EXPLAIN and CALL (see `_shaped`), are SQL there only
# when sqlglot built them (a SELECT, a BEGIN), never as a Command fallback or failed parse.
_NEEDS = {
    "select": ({"FROM"},),
    "with": ({"AS", "SELECT"}, {"AS", "INSERT"}, {"AS", "UPDATE"}, {"AS", "DELETE"}),
    "insert": ({"VALUES"}, {"SELECT"}),
    "replace": ({"INTO", "VALUES"}, {"INTO", "SELECT"}),
    "update": ({"SET"},),
    "delete": ({"FROM"}, {"WHERE"}),  # T-SQL and Oracle may omit FROM before a WHERE
    "merge": ({"INTO", "USING"},),
    # GRANT ROLE r TO USER u is Snowflake's; Postgres' bare `GRANT admin TO bob` reads
    # exactly like "grant access to bob" and is left to declared or pinned SQL.
    "grant": ({"ON", "TO"}, {"ROLE", "TO"}),
    "revoke": ({"ON", "FROM"}, {"ROLE", "FROM"}),
}
# DDL names its object right after the verb, then the object's name. sqlglot builds
# nodes for the common objects; for the rest (ALTER ROLE, DROP USER, DROP EXTENSION)
# it falls back to a Command, which this list lets through.
_DDL = frozenset({"drop", "alter", "truncate", "create"})
_OBJECTS = frozenset({
    "table", "view", "index", "database", "schema", "sequence", "function", "procedure",
    "trigger", "role", "user", "login", "type", "domain", "extension", "policy", "owned",
    "materialized", "temporary", "temp", "unique", "foreign", "event", "system", "default",
    "warehouse", "stage", "stream", "task", "pipe", "server", "publication", "subscription",
    "tablespace", "collation", "aggregate", "operator", "rule", "synonym", "package",
})
# DROP DATABASE/SCHEMA name a container of tables, not a table.
_CONTAINERS = frozenset({"database", "schema"})


class _NoCommandFallbackWarnings(logging.Filter):
    # sqlglot warns "'<the whole SQL>' contains unsupported syntax" for CALL, EXPLAIN
    # and the like. Request text must not reach logs unredacted, and hostile traffic
    # must not flood mitmproxy's event log; we classify them by their first word.
    def filter(self, record: logging.LogRecord) -> bool:
        return "unsupported syntax" not in str(record.msg)


logging.getLogger("sqlglot").addFilter(_NoCommandFallbackWarnings())


def parse(req: RequestView, pinned: bool = False) -> Action | None:
    if not req.body:
        return None
    ct = req.content_type
    if ct in _CONTENT_TYPES:
        return from_texts([text_body(req)], declared=True)
    doc = json_body(req)
    if doc is not None:
        depth = _PINNED_JSON_DEPTH if pinned else 0
        texts = list(_json_texts(doc, depth))
        return from_texts(texts, declared=pinned) if texts else None
    if pinned:
        return from_texts([text_body(req)], declared=True)
    if ct == "text/plain":
        text = text_body(req)
        # Plain text is usually prose ("Update: deploy done"); only SQL that parses counts.
        action = from_texts([text]) if looks_like_sql(text) else None
        return None if action is None or "unparsed" in action.flags else action
    return None


def from_json(doc: Any) -> Action | None:
    """SQL in the top-level query/sql/statement fields of a decoded JSON object."""
    texts = list(_json_texts(doc, 0))
    return from_texts(texts) if texts else None


def from_texts(texts: list[str], declared: bool = False) -> Action | None:
    """Classify SQL texts. `declared`: the sender says it is SQL, so failing to parse
    it is reported ("unparsed") instead of treating the text as not SQL. Undeclared
    text must show it is SQL: a real statement, or the shape of one if unreadable."""
    kinds: list[str] = []
    tables: list[str] = []
    resources: list[tuple[str, str]] = []
    flags: set[str] = set()
    statement_count = 0  # the most any dialect saw, summed over the texts
    budget, work = MAX_CHARS, WORK
    for text in texts:
        if not text.strip():
            continue
        budget -= len(text)
        results, attempts = _parse(text, work // len(text)) if budget >= 0 else ([], 0)
        work -= attempts * len(text)
        if not declared:
            # One real statement makes the whole reading SQL, so `BEGIN; SET ROLE x; ...`
            # around it keeps every part; prose has none.
            results = [statements for statements in results if any(map(_real, statements))]
        if not results:
            # Text too long to read is judged by its first word, as padding could push
            # the keywords `_shaped` looks for past any limit we would scan to.
            too_large = budget < 0
            if declared or (looks_like_sql(text) if too_large else _shaped(text)):
                kinds.append("unparsed")
                flags.add("unparsed")
                if too_large:
                    flags.add("too_large")
            continue  # e.g. {"query": "red shoes"}: a search box, not SQL
        statement_count += max(len(statements) for statements in results)
        for statements in results:  # one list per dialect that could read the text
            for statement in statements:
                _describe(statement, kinds, tables, flags, resources)
    if not kinds:
        return None
    if statement_count > 1:
        flags.add("multi_statement")
    resource_types = unique(kind for kind, _ in resources)
    return Action(
        service="sql",
        action_type=strictest(_TYPES.get(k, "execute") for k in kinds),
        operation=";".join(k.upper() for k in unique(kinds)),
        resource_type=resource_types[0] if len(resource_types) == 1 else None,
        resource_name=",".join(unique(name for _, name in resources)) or None,
        tables=unique(tables),
        statements=unique(k for k in kinds if k != "unparsed"),
        flags=frozenset(flags),
    )


def looks_like_sql(text: str) -> bool:
    return _word(text)[0] in _SQL_WORDS


def _word(text: str, pos: int = 0) -> tuple[str, int]:
    """The lower-cased word at `pos` after comments, blanks and ( ; and where it ends."""
    start = _LEADING_NOISE.match(text, pos)
    word = _FIRST_WORD.match(text, start.end() if start else pos)
    return (word.group().lower(), word.end()) if word else ("", pos)


def _real(statement: exp.Expression) -> bool:
    """Whether a statement sqlglot read from undeclared text is SQL rather than prose it
    read leniently ("delete my account" is a DELETE from table `my` to sqlglot)."""
    key = statement.key
    if key == "command":  # sqlglot's fallback: only its text can tell
        return _shaped(f"{statement.this} {statement.text('expression')}")
    if key == "delete":  # DELETE FROM t (this) or DELETE t WHERE ...
        return bool(statement.args.get("this") or statement.args.get("where"))
    if key == "update":  # the SET list
        return bool(statement.args.get("expressions"))
    if key == "insert":  # VALUES, a SELECT, or DEFAULT VALUES
        return bool(statement.args.get("expression") or statement.args.get("default"))
    return True


def _shaped(text: str, nested: bool = False) -> bool:
    """Whether undeclared text has the keywords of the statement it starts with: the
    test for sqlglot's Command fallbacks and for text no dialect could read."""
    verb, end = _word(text)
    if verb in _DDL:  # DROP TABLE x, TRUNCATE ONLY x, ALTER ROLE x: object, then a name
        obj, end = _word(text, end)
        named = bool(text[end:].strip(" \t\r\n;"))
        return named and (obj in _OBJECTS or (verb == "truncate" and obj == "only"))
    if verb == "explain" and not nested:  # then the statement explained
        rest = text[end:]
        options = _EXPLAIN_OPTIONS.match(rest)
        return _shaped(rest[options.end() if options else 0 :], nested=True)
    if verb == "call":  # CALL name(...)
        return bool(_word(text, end)[0]) and "(" in text[end:]
    needs = _NEEDS.get(verb)
    if not needs:
        return False
    words = {w.upper() for w in _WORDS.findall(text)}
    return any(needed <= words for needed in needs)


def _json_texts(doc: Any, depth: int) -> Iterator[str]:
    if isinstance(doc, dict):
        for key, value in doc.items():
            if isinstance(key, str) and key.lower() in _JSON_KEYS:
                if isinstance(value, str):
                    yield value
                elif isinstance(value, list):
                    yield from (v for v in value if isinstance(v, str))
        children = doc.values()
    elif isinstance(doc, list):
        children = doc
    else:
        return
    if depth > 0:
        for child in children:
            if isinstance(child, (dict, list)):
                yield from _json_texts(child, depth - 1)


# Each dialect's reading of an EXPLAIN holds the same inner statement, and agents
# repeat queries: remembering the last few readings parses each text once. The trees
# are only ever read, so sharing them is safe.
@functools.lru_cache(maxsize=16)
def _parse(text: str, max_attempts: int = len(_PRIMARY)) -> tuple[list[list[exp.Expression]], int]:
    """Statement lists from each dialect that reads `text` as SQL statements, and how
    many dialects were tried."""
    ambiguous = _AMBIGUOUS.search(text) is not None
    results: list[list[exp.Expression]] = []
    dialects = (_PRIMARY + _FALLBACK)[:max_attempts]
    for i, dialect in enumerate(dialects):
        if results and (not ambiguous or i >= len(_PRIMARY)):
            return results, i
        try:
            statements = _parse_as(text, dialect)
        except RecursionError:
            return results, i + 1  # too deep for any dialect; each try is a deep unwind
        if statements:
            results.append(statements)
    return results, len(dialects)


def _parse_as(text: str, dialect: str | None) -> list[exp.Expression] | None:
    try:
        parsed = sqlglot.parse(text, read=dialect)
    except RecursionError:
        raise
    except Exception:  # noqa: BLE001 -- a pure-Python parser on hostile text: any error means "not read"
        return None
    statements = [e for e in parsed if e is not None and e.key != "semicolon"]
    if not statements or not all(_kind(e) for e in statements):
        return None
    return statements


def _kind(e: exp.Expression) -> str | None:
    if e.key == "command":  # statements sqlglot keeps as text: CALL, EXPLAIN, VACUUM...
        word = str(e.this or "").split()
        return word[0].lower() if word else None
    return _KINDS.get(e.key)


def _describe(
    statement: exp.Expression,
    kinds: list[str],
    tables: list[str],
    flags: set[str],
    resources: list[tuple[str, str]],
) -> None:
    kind = _kind(statement) or "unparsed"
    kinds.append(kind)
    if kind == "explain":
        _describe_explain(statement, kinds, tables, flags)
        return
    ctes: set[str] = set()
    found: list[exp.Table] = []
    for node in statement.walk():
        if node is not statement and node.key in _NESTED:
            kinds.append(_KINDS[node.key])
        if node.key == "when":  # MERGE ... WHEN MATCHED THEN DELETE (a bare keyword)
            if str(node.args.get("then")).upper() == "DELETE":
                kinds.append("delete")
        elif node.key in ("delete", "update") and not node.args.get("where"):
            # ... but a MERGE's own UPDATE acts on matched rows only: no WHERE needed.
            if not isinstance(node.parent, exp.When):
                flags.add(f"{node.key}_without_where")
        elif node.key == "cte":
            ctes.add(node.alias_or_name.lower())
        elif isinstance(node, exp.Table):
            container = _dropped_container(node)
            if container:  # DROP DATABASE prod: a resource, so `table:` rules miss it
                resources.append((container, ".".join(part.name for part in node.parts).lower()))
            elif node.name:
                found.append(node)
    # Tables in the order they are written, not the order of the tree.
    found.sort(key=lambda t: t.this.meta.get("start", 0) if t.this else 0)
    for table in found:
        name = ".".join(part.name for part in table.parts).lower()
        if name not in ctes:
            tables.append(name)


def _dropped_container(table: exp.Table) -> str | None:
    """The kind, database or schema, when `table` names what DROP DATABASE/SCHEMA drops."""
    kind = str(table.parent.args.get("kind") or "").lower() if isinstance(table.parent, exp.Drop) else ""
    return kind if kind in _CONTAINERS else None


def _describe_explain(statement: exp.Expression, kinds: list[str], tables: list[str], flags: set[str]) -> None:
    # EXPLAIN ANALYZE runs the statement (Postgres, MySQL): its kinds count too.
    rest = statement.expression.name if statement.expression else ""
    options = _EXPLAIN_OPTIONS.match(rest)
    prefix = options.group() if options else ""
    runs = _RUNS.search(prefix) is not None
    inner_kinds: list[str] = []
    inner_flags: set[str] = set()
    for statements in _parse(rest[len(prefix) :])[0]:
        for inner_statement in statements:
            if _kind(inner_statement) != "explain":  # no EXPLAIN EXPLAIN ... recursion
                _describe(inner_statement, inner_kinds, tables, inner_flags, [])
    if runs:
        kinds.extend(inner_kinds)
        flags.update(inner_flags)
