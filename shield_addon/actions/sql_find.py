"""Where a server may read SQL in a request: the texts `sql.parse` classifies.

A SQL API takes its statement wherever its vendor chose: a top-level JSON field (Neon
`query`, D1 `sql`), a nested one (BigQuery `configuration.query.query`), a list
(`statements[].statement`), a query-string parameter (ClickHouse `?query=`), a form
field, or the body itself. We cannot know every vendor's field, so every string is a
candidate; what keeps prose out is the test of sql.py, and what keeps the cost low is
that a string must *start* like SQL (or hold `; <SQL word>`) before sqlglot sees it.

Each text comes with how far the sender vouched for it: DECLARED (application/sql, a
pinned host's SQL field: unreadable means unparsed), FIELD (a vendor's SQL field name:
always tried, prose-protected) or LOOSE (any other string: tried only when it starts
like SQL, prose-protected).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from .base import RequestView
from .common import COMMENT_START, decodes_as_json, form_body, json_documents, multipart_parts, text_body

DECLARED, FIELD, LOOSE = "declared", "field", "loose"
Text = tuple[str, str]  # (text, one of DECLARED FIELD LOOSE)

SQL_CONTENT_TYPES = frozenset({"application/sql", "application/x-sql", "text/sql", "text/x-sql"})
# Untyped or generic bodies a server (ClickHouse, a homemade /sql endpoint) may read as SQL.
_TEXT_TYPES = frozenset({"", "text/plain", "application/octet-stream"})
_FORM = "application/x-www-form-urlencoded"
_JSON_START = re.compile(rb'(?:\xef\xbb\xbf)?[ \t\r\n]*+[\[{"]')

# Vendors' field names for a statement (lower-cased): Neon/ClickHouse query, D1 sql,
# Databricks/Snowflake statement(s), Snowflake sqlText, Redshift Data/RDS Data Sql,
# Athena QueryString, Timestream/others command. A hit is tried even when it does not
# start like SQL, e.g. `FOOBAR; DROP TABLE t`.
SQL_KEYS = frozenset({
    "query", "sql", "statement", "statements", "sqltext", "sql_text", "querystring",
    "query_string", "command", "sqls", "queries", "sql_query", "stmt",
})

# First word of statements we would rather report than let pass as REST.
SQL_WORDS = frozenset({
    "select", "with", "insert", "update", "delete", "merge", "drop", "truncate", "create", "alter",
    "grant", "revoke", "copy", "describe", "desc", "show", "use", "set", "begin", "start", "commit",
    "rollback", "savepoint", "release", "pragma", "analyze", "explain", "call", "exec", "execute",
    "replace", "upsert", "vacuum", "lock", "do", "values", "table", "rename", "comment", "prepare",
    "deallocate", "declare", "load", "handler", "reindex", "cluster", "refresh", "unload", "attach",
    "detach", "backup", "restore", "kill", "shutdown", "optimize", "undrop", "put", "remove", "system", "install", "reassign",
    "exchange",
})
def _trie(words: frozenset[str]) -> str:
    """An alternation of `words` factored by prefix (`s(?:e(?:lect|t)|how)`): the
    regex engine then rejects a non-word at its first letter, not once per word."""
    heads: dict[str, set[str]] = {}
    for word in words:
        heads.setdefault(word[:1], set()).add(word[1:])
    parts = []
    for head, tails in sorted(heads.items()):
        if head == "":
            continue
        rest = frozenset(t for t in tails if t)
        inner = _trie(rest) if rest else ""
        if not rest:
            parts.append(re.escape(head))
        elif "" in tails:
            parts.append(f"{re.escape(head)}(?:{inner})?")
        else:
            parts.append(f"{re.escape(head)}(?:{inner})")
    return "|".join(parts)


_WORD_ALT = _trie(SQL_WORDS)

# Possessive quantifiers: no backtracking, so no catastrophic cases on hostile text.
# `/*!` and `/*M!` are MySQL/MariaDB code, not comments: they end the noise.
_NOISE = r"(?:[ \t\r\n\f\v]|--[^\n]*+|#[^\n]*+|/\*(?!M?!).*?(?:\*/|\Z)|[(;{\ufeff])*+"
_OPENER = r"/\*M?!"
# Starts like SQL: after the noise, a SQL word or MySQL executable comment; or holds a
# statement separator followed by one (`hello; DROP TABLE t`). After a separator a
# comment counts as a hit: skipping it from every `;` would be quadratic on hostile text.
_CANDIDATE = re.compile(
    rf"\A{_NOISE}(?:{_OPENER}|(?i:{_WORD_ALT})\b)|;[ \t\r\n\f\v(]*+(?:/\*|--|#|(?i:{_WORD_ALT})\b)", re.DOTALL
)

# The same test on raw JSON bytes, so a 256 KiB body with no SQL-looking string is
# dismissed by a few C-level scans instead of decoding and walking thousands of strings.
# It must never miss a string `_CANDIDATE` accepts: JSON escapes of whitespace are
# noise, a comment reaching an escape counts as a hit, and any escaped ASCII character
# (`\u0044ROP`) is a hit of its own. Lower-casing the body first is cheaper than
# case-insensitive matching (only ASCII letters change).
_RAW_WORD = _WORD_ALT.encode()
_RAW_NOISE = rb'(?:[ (;{]|\xef\xbb\xbf|\\[nrtfb]|--[^"\\]*+|\#[^"\\]*+|/\*(?!m?!)(?:[^*"\\]|\*(?!/))*+\*/)*+'
_RAW_STRING = re.compile(
    rb'"(?:(?:' + _RAW_WORD + rb")\b|(?:" + _trie(SQL_KEYS).encode() + rb')"'
    rb"|(?=[ (;{\xef\-#/\\])" + _RAW_NOISE
    + rb"(?:(?:" + _RAW_WORD + rb")\b|/\*m?!|/\*(?:[^*\"\\]|\*(?!/))*+\\|\\))"
)
_RAW_SEPARATOR = re.compile(rb";[ (]*+(?:\\|/\*|--|\#|(?:" + _RAW_WORD + rb")\b)")
_RAW_ESCAPED_ASCII = re.compile(rb"\\u00[0-7]")


def raw_candidate(body: bytes) -> bool:
    """Whether a JSON body may hold a string `candidate` accepts (never a false no)."""
    if _RAW_ESCAPED_ASCII.search(body):
        return True
    low = body.lower()
    return _RAW_STRING.search(low) is not None or _RAW_SEPARATOR.search(low) is not None


def candidate(text: str) -> bool:
    """Whether undeclared text starts like SQL or holds `; <SQL word>`."""
    return _CANDIDATE.search(text) is not None


def texts(req: RequestView, pinned: bool) -> list[Text]:
    """Every text in `req` a server could read as SQL, with how far it was vouched for."""
    found: list[Text] = [t for key, value in req.query for t in _pair(key, value, pinned)]  # ClickHouse ?query=
    if req.body:
        found.extend(_body_texts(req, pinned))
    return [(text, how) for text, how in found if how != LOOSE or candidate(text)]


def _body_texts(req: RequestView, pinned: bool) -> list[Text]:
    ct = req.content_type
    if ct in SQL_CONTENT_TYPES:
        return [(text_body(req), DECLARED)]
    if ct == _FORM:
        return [t for key, value in form_body(req) for t in _pair(key, value, pinned)]
    if ct == "multipart/form-data":  # text fields as form fields (encodings undone), and JSON or SQL-named parts
        return [t for key, value in form_body(req) for t in _pair(key, value, pinned)] + _multipart_texts(req, pinned)
    if ct.startswith("multipart/") and not pinned:  # BigQuery's upload jobs (multipart/related)
        return _multipart_texts(req, pinned)
    if _JSON_START.match(req.body) or COMMENT_START.match(req.body):  # Json.NET skips a leading comment
        if not raw_candidate(req.body):
            return []  # JSON, or something a JSON server would refuse, without a SQL-looking string
        fast = raw_json_texts(req.body, pinned)
        if fast is not None:
            return fast
        doc = _decode_json(req.body)
        if doc is not None:
            return list(_json_texts(doc, pinned))
        lenient = json_documents(req)  # comments, trailing data: what lenient servers read
        if lenient:
            return list(_json_texts(list(lenient), pinned))
        lines = _json_lines(req.body)  # NDJSON: a document a line, each read by a server
        if lines is not None:
            return [t for doc in lines for t in _json_texts(doc, pinned)]
    if pinned:
        return [(text_body(req), DECLARED)]
    if ct in _TEXT_TYPES or ct.startswith("text/"):
        return [(text_body(req), LOOSE)]
    return []


def _json_lines(body: bytes) -> list[Any] | None:
    """The documents of a JSON-lines body, or None unless each non-blank line is one."""
    if b"\n" not in body:
        return None
    docs = []
    for line in body.split(b"\n"):
        if line.strip():
            doc = _decode_json(line)
            if doc is None:
                return None
            docs.append(doc)
    return docs


def _multipart_texts(req: RequestView, pinned: bool) -> list[Text]:
    """Each part of a multipart body as a server reads it: a JSON part as JSON, a named field
    as a form field, any other part as text; an uploaded file only when it is sent as the
    SQL field itself (a .sql migration sent to storage is a file, not a statement)."""
    found: list[Text] = []
    for part in multipart_parts(req.body, req.header("content-type") or ""):
        if part.is_file and (part.name or "").lower() not in SQL_KEYS:
            continue
        if "json" in part.content_type or _JSON_START.match(part.value):
            doc = _decode_json(part.value)
            if doc is not None:
                found.extend(_json_texts(doc, pinned))
                continue
        text = part.value.decode("utf-8", "replace")
        found.extend(_pair(part.name, text, pinned) if part.name is not None else [(text, LOOSE)])
    return found


_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*+"')
_IS_KEY = re.compile(rb"[ \t\r\n]*+:")
_RAW_FIELD = re.compile(rb'"(?:' + _trie(SQL_KEYS).encode() + rb')"[ \t\r\n]*+:[ \t\r\n]*+')


def raw_json_texts(body: bytes, pinned: bool) -> list[Text] | None:
    """What `_json_texts` finds in a JSON body, found by C-level scans of its bytes: the
    walk visits every string (36,000 in a 256 KiB document: 10 ms), this decodes only the
    strings the raw scans point at. None where it cannot be exact, and the walk reads the
    body: escaped quotes (a JSON document inside a string, or a quote a scan could take for
    a string's end), escaped ASCII (`\\u0044ROP`), a list under a SQL key, or a body that is
    not one JSON document. Every `"` of the rest starts or ends a string, so each hit is
    one string, and one followed by `:` is a key."""
    if b'\\"' in body or (b"\\u00" in body and _RAW_ESCAPED_ASCII.search(body)) or not decodes_as_json(body):
        return None
    low = body.lower()  # ASCII letters only: offsets stay those of `body`
    found: dict[int, Text] = {}
    for m in _RAW_FIELD.finditer(low):
        end = m.end()
        head = body[end : end + 1]
        if head == b"[":
            return None  # each statement of the list is a field's: the walk knows which
        if head == b'"':
            literal = _JSON_STRING.match(body, end)
            if literal is None:
                return None
            found[end] = (_string(literal.group()), DECLARED if pinned else FIELD)
    starts = {m.start() for m in _RAW_STRING.finditer(low)}
    starts.update(low.rfind(b'"', 0, m.start()) for m in _RAW_SEPARATOR.finditer(low))
    for start in starts:
        if start in found or start < 0:
            continue
        literal = _JSON_STRING.match(body, start)
        if literal is None:
            return None
        if _IS_KEY.match(body, literal.end()):
            continue  # an object's key: the walk reads values only
        text = _string(literal.group())
        if candidate(text):
            found[start] = (text, LOOSE)
    return [found[i] for i in sorted(found)]


def _string(literal: bytes) -> str:
    """A JSON string literal's text; most have no escape and need no JSON decoder."""
    if b"\\" not in literal:
        return literal[1:-1].decode("utf-8", "surrogateescape")
    return json.loads(literal)


def json_texts(doc: Any) -> list[Text]:
    """The candidate texts in an already decoded JSON document (MCP tool arguments)."""
    return [(text, how) for text, how in _json_texts(doc, False) if how != LOOSE or candidate(text)]


def _pair(key: str, value: str, pinned: bool) -> Iterator[Text]:
    if key.lower() in SQL_KEYS:
        yield value, DECLARED if pinned else FIELD
    else:
        yield value, LOOSE
        inner = _embedded_json(value)
        if inner is not None:  # a JSON document in a form or query value (Slack's payload=, ?variables=)
            yield from _json_texts(inner, pinned)


class _Pairs(list):  # type: ignore[type-arg]
    """A JSON object as its (key, value) pairs: a duplicate key keeps every value,
    since servers differ on which one wins."""


def _decode_json(body: bytes) -> Any:
    try:
        return json.loads(body, object_pairs_hook=_Pairs)
    except (ValueError, RecursionError):
        return None


_EMBEDDED = re.compile(r"\A\s*(?:\{[\s\S]*\}|\[[\s\S]*\])\s*\Z")


def _embedded_json(text: str) -> Any:
    if len(text) < 2 or text.lstrip()[:1] not in "{[" or _EMBEDDED.match(text) is None:
        return None
    doc = _decode_json(text.encode())
    return doc if isinstance(doc, (list, _Pairs)) else None


def _json_texts(doc: Any, pinned: bool) -> Iterator[Text]:
    # Iterative: a hostile body nested thousands deep must not exhaust the stack.
    stack: list[tuple[Any, bool]] = [(doc, False)]
    while stack:
        node, under_key = stack.pop()
        if isinstance(node, str):
            yield node, (DECLARED if pinned else FIELD) if under_key else LOOSE
            inner = _embedded_json(node)
            if inner is not None:  # a JSON document carried as a string: a job queue's payload
                stack.append((inner, False))
        elif isinstance(node, _Pairs):
            for key, value in reversed(node):
                stack.append((value, isinstance(key, str) and key.lower() in SQL_KEYS))
        elif isinstance(node, (list, dict)):
            items = node.values() if isinstance(node, dict) else node
            # A list under a SQL key is a list of statements: each is declared as much.
            stack.extend((item, under_key) for item in reversed(list(items)))


# --- inside one text: what a server reads that sqlglot may not ---------------------------

# MySQL runs the body of /*! ... */ and /*!50000 ... */ (MariaDB also /*M! ... */) as
# code; every other engine skips it. Opened up, the text reads as MySQL reads it.
_EXECUTABLE_COMMENT = re.compile(r"/\*M?!\d{0,6}((?:[^*]|\*(?!/))*+)(?:\*/|\Z)")


def opened(text: str) -> str | None:
    """`text` with MySQL's executable comments opened, or None when it has none."""
    if "/*" not in text or _EXECUTABLE_COMMENT.search(text) is None:
        return None
    return _EXECUTABLE_COMMENT.sub(lambda m: f" {m.group(1)} ", text)


# Tokens that may hold a `;` without ending a statement, in two lexings that disagree
# on backslashes, `#` and dollar quotes: the standard/Postgres one and MySQL's. An
# unterminated token runs to the end, as a server would see it.
# T-SQL's GO (sqlcmd, SSMS, most T-SQL HTTP runners) ends a batch on a line of its own.
# A Windows line ends in \r\n, and a comment may follow GO on its line.
_GO = r"(?P<go>(?m:^[ \t]*GO(?:[ \t]+\d+)?[ \t]*;?[ \t]*(?:--[^\n]*+)?\r?$))"
# Verbs that start a destructive or code-running statement on a line of their own:
# where a T-SQL batch without semicolons starts its next statement. Mid-line, prose
# ("select the drop table option") would split as well as SQL.
_VERB = r"|(?P<verb>(?m:^)[ \t]*(?:DROP|TRUNCATE|DELETE|UPDATE|INSERT|MERGE|ALTER|CREATE|GRANT|EXEC|EXECUTE|SHUTDOWN)\b)"
_STANDARD = re.compile(
    _GO + r"|'(?:[^']|'')*+(?:'|\Z)|\"(?:[^\"]|\"\")*+(?:\"|\Z)|`[^`]*+(?:`|\Z)|--[^\n]*+"
    r"|/\*(?:[^*]|\*(?!/))*+(?:\*/|\Z)|(?P<tag>\$[A-Za-z_]?\w*\$)(?:.*?(?P=tag)|.*\Z)|;" + _VERB,
    re.DOTALL | re.IGNORECASE,
)
_MYSQL = re.compile(
    # MySQL's -- is a comment only before a blank or a control character: `1 --1` is 1 - -1.
    _GO + r"|'(?:[^'\\]|\\.|'')*+(?:'|\Z)|\"(?:[^\"\\]|\\.|\"\")*+(?:\"|\Z)|`[^`]*+(?:`|\Z)"
    r"|--(?=[\x00-\x20]|\Z)[^\n]*+|#[^\n]*+"
    r"|/\*(?:[^*]|\*(?!/))*+(?:\*/|\Z)|;" + _VERB,
    re.DOTALL | re.IGNORECASE,
)


def fragments(text: str) -> list[str]:
    """The statements of `text` split at top-level semicolons, in every lexing that
    splits it differently, so each can be classified on its own; and also before each
    top-level verb that starts a statement, as T-SQL needs no semicolon between
    statements (`SELECT 1 DROP TABLE t` is two). Only text no dialect reads gets here."""
    found: dict[str, None] = {}
    lexings = (_STANDARD, _MYSQL) if re.search(r"[\\#$`-]", text) else (_STANDARD,)
    for lexing in lexings:
        start = verb_start = 0
        for token in lexing.finditer(text):
            if token.group() == ";" or token.group("go"):
                found[text[start : token.start()]] = None
                if verb_start != start:
                    found[text[verb_start : token.start()]] = None
                start = verb_start = token.end()
            elif token.group("verb") and text[start : token.start()].strip(" \t\r\n\f\v("):
                found[text[verb_start : token.start()]] = None
                verb_start = token.start()
        found[text[start:]] = None
        if verb_start != start:
            found[text[verb_start:]] = None
    return [f for f in found if f.strip(" \t\r\n\f\v;")]


def nested_comment(text: str) -> bool:
    """Whether a /* comment holds another /*: Postgres nests them, MySQL and T-SQL end
    at the first */, so the dialects disagree on where code starts again."""
    return "/*" in text and _NESTED_COMMENT.search(text) is not None


_NESTED_COMMENT = re.compile(r"/\*(?:[^*/]|\*(?!/)|/(?!\*))*+/\*")


_BATCHES = re.compile(r";|" + _GO)


def naive_pieces(text: str, limit: int) -> list[str]:
    """`text` split at every `;` and GO line, strings and comments not minded: a cheap
    over-split for tests that must not miss a statement."""
    return [p for p in _BATCHES.split(text, maxsplit=limit) if p][:limit]


_DOLLAR_BODY = re.compile(r"(\$[A-Za-z_]?\w*\$)(.*?)\1", re.DOTALL)
# Strings a dynamic statement may run: SQL's '...', BigQuery's '''...''' and """...""", and
# "..." (a string in MySQL and BigQuery, an identifier elsewhere: reading it errs safe).
_LITERAL = re.compile(
    r"'''((?:[^'\\]|\\.|'(?!''))*+)'''"
    r'|"""((?:[^"\\]|\\.|"(?!""))*+)"""'
    r"|[NnEeXx]?'((?:[^']|'')*+)'"
    r'|"((?:[^"\\]|\\.|"")*+)"',
    re.DOTALL,
)
# Words of procedural blocks (PL/pgSQL, T-SQL, Snowflake Scripting) before a statement.
_BLOCK_WORDS = re.compile(
    r"\A(?:\s|\b(?:BEGIN|END|DECLARE|LOOP|THEN|ELSE|ELSIF|IF|WHILE|FOR|DO|AS|IS|TRY|CATCH|ATOMIC"
    r"|NOT\s+ATOMIC)\b)*+",
    re.IGNORECASE,
)
# An anonymous block (Oracle, T-SQL, Snowflake and BigQuery scripting): BEGIN that does
# not start a transaction, or DECLARE. Its statements are run like any others.
_BLOCK = re.compile(
    r"\b(?:DECLARE|BEGIN(?![ \t\r\n]*+(?:;|\Z|TRAN(?:SACTION)?\b|WORK\b|ISOLATION\b|DEFERRED\b|IMMEDIATE\b"
    r"|EXCLUSIVE\b|READ\b|DISTRIBUTED\b)))",
    re.IGNORECASE,
)
_BLOCK_EDGES = re.compile(
    r"\bBEGIN(?:\s+(?:TRY|CATCH|ATOMIC|NOT\s+ATOMIC))?\b(?![ \t\r\n]*+(?:;|\Z|TRAN(?:SACTION)?\b|WORK\b"
    r"|ISOLATION\b|DEFERRED\b|IMMEDIATE\b|EXCLUSIVE\b|READ\b|DISTRIBUTED\b))"
    r"|\bEND(?:\s+(?:TRY|CATCH|IF|LOOP|WHILE|FOR)\b)?(?=\s*(?:;|\Z|BEGIN\b|END\b))",
    re.IGNORECASE,
)
_PREPARE_AS = re.compile(r"\A\s*\w+\s*(?:\([^)]*\))?\s+AS\s+(.+)\Z", re.IGNORECASE | re.DOTALL)


def code_inside(text: str) -> list[str]:
    """Texts a dynamic statement or a function body may run: dollar-quoted bodies,
    split into statements with block words stripped, every string literal (a
    `SET @q = 'DROP ...'` feeding `PREPARE s FROM @q` included), and what follows
    `PREPARE name AS`."""
    inner: list[str] = []
    for body in _DOLLAR_BODY.finditer(text):
        for statement in fragments(body.group(2)):
            words = _BLOCK_WORDS.match(statement)
            inner.append(statement[words.end() if words else 0 :])
    for m in _LITERAL.finditer(text):
        literal = next(g for g in m.groups() if g is not None)
        inner.append(literal.replace("''", "'") if m.group(3) is not None else literal)
    return [t for t in unique_texts(inner) if t.strip()]


def unblocked(text: str) -> list[str]:
    """The statements of an anonymous block, its block words taken for separators
    (T-SQL needs no `;`): `BEGIN TRY DROP TABLE t END TRY` -> [`DROP TABLE t`]. Empty
    when `text` has no block. An over-split (a CASE's END) only loses a reading."""
    if _BLOCK.search(text) is None:
        return []
    statements = []
    for statement in fragments(_BLOCK_EDGES.sub(";", text)):
        words = _BLOCK_WORDS.match(statement)
        rest = statement[words.end() if words else 0 :]
        if rest.strip(" \t\r\n\f\v;"):
            statements.append(rest)
    return statements


def prepared(command_text: str) -> str | None:
    """The statement of Postgres' `PREPARE name [(types)] AS statement`."""
    m = _PREPARE_AS.match(command_text)
    return m.group(1) if m else None


def unique_texts(texts: list[str]) -> list[str]:
    return list(dict.fromkeys(texts))
