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

Where the texts come from (every JSON string at any depth, query and form values, text
bodies) is sql_find.py. Each text is read several ways and the findings united: in
each dialect; with MySQL's executable comments (`/*!50000 DROP TABLE t */`) opened;
statement by statement when no dialect reads the whole text, so one unreadable
fragment (`FOOBAR; DROP TABLE t`) flags the text `unparsed` without hiding the rest;
and, for dynamic SQL and function bodies, the code they carry (dollar-quoted bodies,
string literals).

Statement kinds beyond sqlglot's names, for what destroys without saying DROP:
- `execute_dynamic` (action execute): PREPARE, EXECUTE IMMEDIATE, EXEC('...'),
  EXEC sp_executesql, DO blocks, COPY ... TO/FROM PROGRAM (also flag `copy_program`);
  a plain CALL or EXEC proc stays `call`/`exec`/`execute`.
- `replace_table` (delete): CREATE OR REPLACE TABLE, REPLACE TABLE.
- `replace_database` (delete): CREATE OR REPLACE DATABASE/SCHEMA (a resource, as DROP).
- `overwrite` (delete): INSERT OVERWRITE [TABLE].
- `replace_into` (delete): REPLACE INTO, INSERT OR REPLACE (deletes then inserts:
  ON DELETE CASCADE and delete triggers fire).
- `alter_drop` (delete): ALTER TABLE ... DROP COLUMN/PARTITION/CONSTRAINT.
Flags: `delete_without_where`/`update_without_where` also when the WHERE cannot tell
rows apart (`WHERE 1=1`, `WHERE true`, `x = x`, an OR with such a branch);
`merge_delete` for MERGE ... WHEN MATCHED THEN DELETE.
"""

from __future__ import annotations

import functools
import logging
import re
from collections import Counter
from typing import Any

import sqlglot
from sqlglot import exp

from . import sql_find, sql_kinds, sql_tsql, sql_where
from .base import Action, RequestView
from .common import strictest, unique

# sqlglot is pure Python, about 4 us a character for each dialect tried. Past
# MAX_CHARS of SQL in one request we stop and say so ("too_large") rather than stall
# the proxy (big bulk INSERTs land there too; rules can allow them), and all dialect
# attempts together may read WORK characters: at most about 0.3 s per request.
MAX_CHARS = 20_000
WORK = 4 * MAX_CHARS  # enough for the four primary dialects on any text we accept

# read=None is sqlglot's own permissive dialect.
_PRIMARY = (None, "postgres", "mysql", "tsql")
_FALLBACK = ("sqlite", "bigquery", "snowflake", "clickhouse", "databricks")
# Backslash escapes, `#` and `--` comments, nested /* */, $$ strings and the three
# identifier quotes are where dialects split one text into different statements.
_AMBIGUOUS = re.compile(r"[\\#$`\[\"]|/\*|--")


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
    "select": ({"FROM"}, {"INTO", "OUTFILE"}, {"INTO", "DUMPFILE"}),
    "with": ({"AS", "SELECT"}, {"AS", "INSERT"}, {"AS", "UPDATE"}, {"AS", "DELETE"}),
    "insert": ({"VALUES"}, {"SELECT"}),
    "replace": ({"INTO", "VALUES"}, {"INTO", "SELECT"}, {"TABLE", "AS"}, {"TABLE", "USING"}),
    "update": ({"SET"},),
    "delete": ({"FROM"}, {"WHERE"}),  # T-SQL and Oracle may omit FROM before a WHERE
    "merge": ({"INTO", "USING"},),
    # GRANT ROLE r TO USER u is Snowflake's; Postgres' bare `GRANT admin TO bob` reads
    # exactly like "grant access to bob" and is left to declared or pinned SQL.
    "grant": ({"ON", "TO"}, {"ROLE", "TO"}),
    "revoke": ({"ON", "FROM"}, {"ROLE", "FROM"}),
    "load": ({"DATA", "INFILE"}, {"XML", "INFILE"}),
    "kill": ({"QUERY", "WHERE"}, {"MUTATION", "WHERE"}, {"CONNECTION"}),
    "shutdown": ({"WITH", "NOWAIT"},),
    "exchange": ({"TABLES", "AND"}, {"DICTIONARIES", "AND"}),  # ClickHouse: swaps two tables
}
# DDL names its object right after the verb, then the object's name. sqlglot builds
# nodes for the common objects; for the rest (ALTER ROLE, DROP USER, DROP EXTENSION)
# it falls back to a Command, which this list lets through.
_DDL = frozenset({"drop", "alter", "truncate", "create", "rename"})  # RENAME TABLE a TO b
_OBJECTS = frozenset({
    "table", "view", "index", "database", "schema", "sequence", "function", "procedure",
    "trigger", "role", "user", "login", "type", "domain", "extension", "policy", "owned",
    "materialized", "temporary", "temp", "unique", "foreign", "event", "system", "default",
    "warehouse", "stage", "stream", "task", "pipe", "server", "publication", "subscription",
    "tablespace", "collation", "aggregate", "operator", "rule", "synonym", "package", "language",
})
_DYNAMIC_SHAPES = {
    "exec": re.compile(r"\s*(?:[(@'\"]|N'|(?:IMMEDIATE|sp_executesql)\b)", re.IGNORECASE),
    "execute": re.compile(r"\s*(?:[(@'\"]|N'|(?:IMMEDIATE|sp_executesql)\b)", re.IGNORECASE),
    "executesql": re.compile(r""),
    "prepare": re.compile(r"\s+\w+\s*(?:\([^)]*\))?\s+(?:FROM|AS)\b", re.IGNORECASE),
    "do": re.compile(r"\s*(?:LANGUAGE\s+\w+\s+)?[$']", re.IGNORECASE),
}
_REASSIGN = re.compile(r"\s+OWNED\s+BY\b", re.IGNORECASE)
_MAX_DEPTH = 2
_PIECES = 32  # statements of one text pre-checked; a hostile text gets no more
# Kinds whose short forms have none of the keywords `_shaped` wants: SELECT 1,
# TRUNCATE t, T-SQL's DELETE t, VALUES (1).
_UNSHAPED = _DDL | {"copy", "select", "values", "table", "delete"}  # SQL inside dynamic SQL inside dynamic SQL is read; deeper is unparsed


class _NoCommandFallbackWarnings(logging.Filter):
    # sqlglot warns "'<the whole SQL>' contains unsupported syntax" for CALL, EXPLAIN
    # and the like. Request text must not reach logs unredacted, and hostile traffic
    # must not flood mitmproxy's event log; we classify them by their first word.
    def filter(self, record: logging.LogRecord) -> bool:
        return "unsupported syntax" not in str(record.msg)


logging.getLogger("sqlglot").addFilter(_NoCommandFallbackWarnings())


def parse(req: RequestView, pinned: bool = False) -> Action | None:
    found = sql_find.texts(req, pinned)
    return _classify(found) if found else None


def from_json(doc: Any) -> Action | None:
    """SQL in any string of a decoded JSON document (an MCP tool's arguments)."""
    found = sql_find.json_texts(doc)
    return _classify(found) if found else None


def from_texts(texts: list[str], declared: bool = False) -> Action | None:
    """Classify SQL texts. `declared`: the sender says it is SQL, so failing to parse
    it is reported ("unparsed") instead of treating the text as not SQL. Undeclared
    text must show it is SQL: a real statement, or the shape of one if unreadable."""
    return _classify([(t, sql_find.DECLARED if declared else sql_find.FIELD) for t in texts])


class _Findings:
    """What the texts of one request do, united, and what reading them may still cost."""

    def __init__(self) -> None:
        self.kinds: list[str] = []
        self.tables: list[str] = []
        self.resources: list[tuple[str, str]] = []
        self.flags: set[str] = set()
        self.statement_count = 0  # the most any reading saw, summed over the texts
        self.chars = MAX_CHARS
        self.work = WORK

    def unparsed(self, too_large: bool = False) -> None:
        self.kinds.append("unparsed")
        self.flags.add("unparsed")
        if too_large:
            self.flags.add("too_large")


def _classify(items: list[tuple[str, str]]) -> Action | None:
    found = _Findings()
    # A text given many times (a tag "rollback" on every document of a bulk body) reads
    # the same each time: read once, its statements counted as often as it was given.
    for (text, how), times in Counter(items).items():
        # Any string may start with "Update" or "Use": sqlglot only sees the ones that
        # could still turn out to be SQL, so a large body of prose stays cheap.
        if how == sql_find.LOOSE and not _may_be_sql(text):
            continue
        before = found.statement_count
        _read_text(text, how == sql_find.DECLARED, found, depth=0)
        found.statement_count += (found.statement_count - before) * (times - 1)
    if not found.kinds:
        return None
    if found.statement_count > 1:
        found.flags.add("multi_statement")
    resource_types = unique(kind for kind, _ in found.resources)
    return Action(
        service="sql",
        action_type=strictest(sql_kinds.TYPES.get(k, "execute") for k in found.kinds),
        operation=";".join(k.upper() for k in unique(found.kinds)),
        resource_type=resource_types[0] if len(resource_types) == 1 else None,
        resource_name=",".join(unique(name for _, name in found.resources)) or None,
        tables=unique(found.tables),
        statements=unique(k for k in found.kinds if k != "unparsed"),
        flags=frozenset(found.flags),
    )


def _read_text(text: str, declared: bool, found: _Findings, depth: int) -> None:
    if not text.strip():
        return
    readings, clean = _readings(text, declared, found)
    if readings is None:  # over budget
        if declared or _may_be_sql(text):
            found.unparsed(too_large=True)
        return
    code = sql_find.opened(text)
    if code is not None:  # what MySQL runs inside /*! ... */ counts too
        more, more_clean = _readings(code, declared, found)
        readings += more or []
        clean = clean and (more_clean or not more)
    # An anonymous block runs its statements: they count, its words do not. Each is
    # read alone, as a DECLARE no dialect reads must not hide the EXECUTE after it.
    for statement in sql_find.unblocked(text) if depth < _MAX_DEPTH else ():
        more, _ = _readings(statement, declared, found)
        readings += more or []
    batch, batch_clean = _batch_readings(text, declared, found)
    readings += batch
    clean = clean or batch_clean  # T-SQL read every statement of the batch
    if not clean or sql_find.nested_comment(text):
        # No dialect read every statement: read them one by one, so an unreadable one
        # flags the text without hiding the others (`FOOBAR; DROP TABLE t`). Nested
        # comments: a dialect that nests them reads less code than MySQL runs.
        pieces = sql_find.fragments(text) if len(text) > 1 else []
        if len(pieces) > 1:
            readings, clean = _fragment_readings(pieces, declared, found, readings)
    if not readings:
        # Text too long to read is judged by its first word, as padding could push
        # the keywords `_shaped` looks for past any limit we would scan to.
        if declared or _shaped(text):
            found.unparsed()
            verb, end = _word(text)  # MySQL's LOAD DATA INFILE, which sqlglot cannot read
            if sql_kinds.outside_text(verb, text[end:]):
                found.flags.add("reaches_outside")
        return  # e.g. {"query": "red shoes"}: a search box, not SQL
    if not clean:
        found.unparsed()
    if depth == 0:  # code inside a statement is part of that statement
        found.statement_count += max(len(statements) for statements in readings)
    dynamic = False
    for statements in readings:
        for statement in statements:
            if sql_kinds.statement_kind(statement):
                dynamic |= _describe(statement, found)
    if dynamic and depth < _MAX_DEPTH:
        for inner in sql_find.code_inside(text):
            _read_text(inner, False, found, depth + 1)


def _readings(text: str, declared: bool, found: _Findings) -> tuple[list[list[exp.Expression]] | None, bool]:
    """Each dialect's statements for `text` (None when over budget) and whether one
    dialect classified every statement."""
    found.chars -= len(text)
    if found.chars < 0 or found.work < len(text):
        return None, False
    results, clean, attempts = _parse(text, found.work // len(text))
    found.work -= attempts * len(text)
    readings = list(results)
    if not declared:
        # One real statement makes the whole reading SQL, so `BEGIN; SET ROLE x; ...`
        # around it keeps every part; prose has none.
        readings = [statements for statements in readings if any(sql_kinds.statement_kind(s) and _real(s) for s in statements)]
    return readings, clean


def _batch_readings(text: str, declared: bool, found: _Findings) -> tuple[list[list[exp.Expression]], bool]:
    """The statements of a T-SQL batch that needs no `;` (`SELECT 1 DROP TABLE t`), each
    read on its own (sql_tsql.py), and whether each was read. Extra readings only: a piece
    nobody reads adds nothing, so a well-formed statement is never made `unparsed` by a
    split that was not there."""
    if len(text) > found.chars or len(text) > found.work or not sql_tsql.has_inner_verb(text):
        return [], False

    def complete(head: str) -> bool:
        found.work -= len(head)
        return found.work > 0 and _complete(head, declared)

    readings: list[list[exp.Expression]] = []
    pieces = sql_tsql.statements(text, complete, declared, _PIECES)
    every = bool(pieces)
    for piece in pieces:
        more, piece_clean = _readings(piece, declared, found)
        readings += more or []
        every = every and piece_clean
    return readings, every and bool(readings)


def _complete(head: str, declared: bool) -> bool:
    """Whether T-SQL reads `head` as whole statements, after which a verb starts another:
    parsed, no statement a Command fallback or a fragment (`UPDATE t` before `SET`,
    `INSERT INTO t` before `SELECT`), and, undeclared, SQL rather than prose (`select the`
    before `drop table option` is a search, not two statements)."""
    try:
        statements = _parse_as(head, "tsql")
    except RecursionError:
        return False
    if not statements or any(s.key == "command" or not _real(s) for s in statements):
        return False
    return declared or sql_tsql.evidence(head) or _shaped(head)


def _fragment_readings(
    pieces: list[str], declared: bool, found: _Findings, readings: list[list[exp.Expression]]
) -> tuple[list[list[exp.Expression]], bool]:
    sql_seen, unreadable = bool(readings), False
    for piece in pieces:
        more, piece_clean = _readings(piece, declared, found)
        if more is None:
            found.unparsed(too_large=True)
            return readings, False
        if more:
            readings.extend(more)
            sql_seen = True
        unreadable |= not piece_clean  # a comment-only piece is clean
    return (readings if sql_seen else []), not unreadable


def looks_like_sql(text: str) -> bool:
    return _word(text)[0] in sql_find.SQL_WORDS


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
    if key == "delete":  # DELETE FROM t (this), DELETE t WHERE ..., or T-SQL's DELETE t
        return bool(statement.args.get("this") or statement.args.get("where")) or _bare_target(statement)
    if key == "update":  # the SET list
        return bool(statement.args.get("expressions"))
    if key == "insert":  # VALUES, a SELECT, or DEFAULT VALUES
        return bool(statement.args.get("expression") or statement.args.get("default"))
    return True


def _bare_target(statement: exp.Expression) -> bool:
    """T-SQL's `DELETE users` (FROM is optional): one table named and nothing after it that
    prose has. `delete my account` names table `my` with an alias, which T-SQL refuses."""
    targets = statement.args.get("tables") or []
    return len(targets) == 1 and isinstance(targets[0], exp.Table) and not targets[0].alias


def _may_be_sql(text: str) -> bool:
    """A cheap necessary condition for undeclared text to be read as SQL: one of its
    statements (split naively, executable comments opened) has the keywords of its
    kind, or is DDL or COPY, whose short forms (`TRUNCATE t`) need none."""
    for variant in (text, sql_find.opened(text)):
        for piece in sql_find.naive_pieces(variant or "", _PIECES):
            if _word(piece)[0] in _UNSHAPED or _shaped(piece):
                return True
            if sql_tsql.evidence(piece) and sql_tsql.has_inner_verb(piece):  # DECLARE @s ... EXEC(@s)
                return True
    return False


def _shaped(text: str, nested: bool = False) -> bool:
    """Whether undeclared text has the keywords of the statement it starts with: the
    test for sqlglot's Command fallbacks and for text no dialect could read."""
    verb, end = _word(text)
    if verb in _DDL:  # DROP TABLE x, TRUNCATE ONLY x, ALTER ROLE x: object, then a name
        obj, end = _word(text, end)
        if obj == "or":  # CREATE OR REPLACE USER x
            obj, end = _word(text, _word(text, end)[1])
        named = bool(text[end:].strip(" \t\r\n;"))
        return named and (obj in _OBJECTS or (verb == "truncate" and obj == "only"))
    if verb == "explain" and not nested:  # then the statement explained
        rest = text[end:]
        options = _EXPLAIN_OPTIONS.match(rest)
        return _shaped(rest[options.end() if options else 0 :], nested=True)
    if sql_kinds.shaped_phrase(verb, text[end:]):  # SET ROLE x, SET PASSWORD, PURGE BINARY LOGS, RESET MASTER
        return True
    if verb == "system":  # ClickHouse SYSTEM SHUTDOWN; SYSTEM FLUSH LOGS is harmless either way
        return sql_kinds.SYSTEM_ADMIN.match(text, end) is not None
    if sql_kinds.outside_text(verb, text[end:]):  # ATTACH 'file', LOAD 'lib.so', VACUUM INTO
        return True
    if verb == "copy":  # COPY INTO 's3://...' with options no dialect reads: a Command
        return sql_kinds.COPY_OUTSIDE.search(text[end:]) is not None
    if verb == "detach":  # ClickHouse DETACH TABLE t
        return sql_kinds.DETACHED.match(text, end) is not None and bool(_word(text, _word(text, end)[1])[0])
    if verb == "reassign":  # REASSIGN OWNED BY a TO b: everything a owns, given away
        return _REASSIGN.match(text, end) is not None
    if verb == "call":  # CALL name(...)
        return bool(_word(text, end)[0]) and "(" in text[end:]
    if verb in sql_kinds.DYNAMIC_WORDS:  # EXEC('...'), EXECUTE IMMEDIATE, PREPARE s FROM, DO $$
        return _DYNAMIC_SHAPES[verb].match(text, end) is not None or sql_kinds.known_procedure(text[end:])
    needs = _NEEDS.get(verb)
    if not needs:
        return False
    words = {w.upper() for w in _WORDS.findall(text)}
    return any(needed <= words for needed in needs)


# Each dialect's reading of an EXPLAIN holds the same inner statement, and agents
# repeat queries: remembering the last few readings parses each text once. The trees
# are only ever read, so sharing them is safe.
@functools.lru_cache(maxsize=32)
def _parse(text: str, max_attempts: int = len(_PRIMARY)) -> tuple[tuple[list[exp.Expression], ...], bool, int]:
    """Statement lists from each dialect that reads `text` with at least one statement
    we can classify, whether one dialect classified every statement (a text with no
    statement, only comments, counts), and how many dialects were tried."""
    ambiguous = _AMBIGUOUS.search(text) is not None
    results: list[list[exp.Expression]] = []
    clean = False
    dialects = (_PRIMARY + _FALLBACK)[:max_attempts]
    for i, dialect in enumerate(dialects):
        # Unambiguous text reads the same everywhere: one clean reading is enough.
        if clean and (not ambiguous or i >= len(_PRIMARY)):
            return tuple(results), clean, i
        try:
            statements = _parse_as(text, dialect)
        except RecursionError:
            return tuple(results), clean, i + 1  # too deep for any dialect; each try is a deep unwind
        if statements is None:
            continue
        if all(sql_kinds.statement_kind(e) for e in statements):
            clean = True
        if any(sql_kinds.statement_kind(e) for e in statements):
            results.append(statements)
    return tuple(results), clean, len(dialects)


def _parse_as(text: str, dialect: str | None) -> list[exp.Expression] | None:
    named = sql_kinds.phrase(text)
    if named is not None and ";" not in text.rstrip(" \t\r\n;"):  # one statement: a text of more is split first
        return [exp.Command(this=named[0], expression=exp.Literal.string(named[1]))]
    try:
        parsed = sqlglot.parse(text, read=dialect)
    except RecursionError:
        raise
    except Exception:  # noqa: BLE001 -- a pure-Python parser on hostile text: any error means "not read"
        return None
    return [e for e in parsed if e is not None and e.key != "semicolon"]


def _describe(statement: exp.Expression, found: _Findings) -> bool:
    """Adds what `statement` does to `found`; True when it runs code we should read
    further (dynamic SQL, a function body)."""
    base = sql_kinds.statement_kind(statement) or "unparsed"
    kind = sql_kinds.special_kind(statement, base)
    found.kinds.append(kind)
    if base == "explain":
        _describe_explain(statement, found)
        return False
    if base == "copy" and sql_kinds.runs_program(statement):
        found.kinds.append("execute_dynamic")
        found.flags.add("copy_program")
    if base == "prepare" and statement.key == "command":
        inner = sql_find.prepared(statement.text("expression"))
        if inner:
            _read_text(inner, True, found, _MAX_DEPTH)
    if sql_kinds.admin_statement(statement, base):
        found.flags.add("server_admin")
    if sql_kinds.outside_statement(statement, base):
        found.flags.add("reaches_outside")
    runs_sql = False
    ctes: set[str] = set()
    tables: list[exp.Table] = []
    for node in statement.walk():
        name = sql_kinds.callee(node)
        if name:
            flags, runs = sql_kinds.call_flags(name)
            found.flags |= flags
            runs_sql |= runs
            if name == "set_config" and sql_kinds.unsafe_setting(node):
                found.flags.add("server_admin")
        if node is not statement and node.key in sql_kinds.NESTED:
            found.kinds.append(sql_kinds.KINDS[node.key])
        if node.key in sql_kinds.NESTED and sql_kinds.catalog_write(node):
            found.flags.add("server_admin")
        if node.key == "when":  # MERGE ... WHEN MATCHED THEN DELETE (a bare keyword)
            if str(node.args.get("then")).upper() == "DELETE":
                found.kinds.append("delete")
                found.flags.add("merge_delete")
        elif node.key in ("delete", "update"):
            where = node.args.get("where")
            # A MERGE's own UPDATE acts on matched rows only: no WHERE needed.
            unfiltered = not where and not isinstance(node.parent, exp.When)
            if unfiltered or (where and sql_where.all_rows(where.this, sql_where.table_aliases(node))):
                found.flags.add(f"{node.key}_without_where")
        elif node.key == "merge" and node.args.get("on") is not None and sql_where.all_rows(node.args["on"]):
            # MERGE ... ON 1 = 1: every target row matches, so WHEN MATCHED acts on all
            if any(isinstance(w.args.get("then"), exp.Update) for w in node.find_all(exp.When)):
                found.flags.add("update_without_where")
        elif node.key == "cte":
            ctes.add(node.alias_or_name.lower())
        elif isinstance(node, exp.Table):
            container = sql_kinds.dropped_container(node)
            if container:  # DROP DATABASE prod: a resource, so `table:` rules miss it
                found.resources.append((container, ".".join(part.name for part in node.parts).lower()))
            elif node.name:
                tables.append(node)
    # Tables in the order they are written, not the order of the tree.
    tables.sort(key=lambda t: t.this.meta.get("start", 0) if t.this else 0)
    for table in tables:
        name = ".".join(part.name for part in table.parts).lower()
        if name not in ctes:
            found.tables.append(name)
    if runs_sql:  # dblink_exec('...', 'DROP TABLE t'): what it runs is read as code
        found.kinds.append("execute_dynamic")
    created = str(statement.args.get("kind") or "").upper() if base == "create" else ""
    return kind == "execute_dynamic" or runs_sql or created in ("FUNCTION", "PROCEDURE")


def _describe_explain(statement: exp.Expression, found: _Findings) -> None:
    # EXPLAIN ANALYZE runs the statement (Postgres, MySQL): its kinds count too.
    rest = statement.expression.name if statement.expression else ""
    options = _EXPLAIN_OPTIONS.match(rest)
    prefix = options.group() if options else ""
    inner = _Findings()
    for statements in _parse(rest[len(prefix) :])[0]:
        for inner_statement in statements:
            if sql_kinds.statement_kind(inner_statement) not in (None, "explain"):  # no EXPLAIN EXPLAIN ... recursion
                _describe(inner_statement, inner)
    found.tables.extend(inner.tables)
    if _RUNS.search(prefix) is not None:
        found.kinds.extend(inner.kinds)
        found.flags.update(inner.flags)
