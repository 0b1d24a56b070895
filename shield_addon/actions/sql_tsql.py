"""T-SQL batches: statements one after another with no `;` and no line break between them.

SQL Server (and Sybase) start a new statement at the next statement verb once the one
before is complete: `SELECT 1 DROP TABLE users` is two statements, `IF 1=1 DROP TABLE t`
a condition and a DROP, `DECLARE @s varchar(99) SET @s='...' EXEC(@s)` three. No other
dialect reads such text at all, so sqlglot either refuses it or reads one statement and
the DROP is never seen.

The split here is at a verb only where the text since the last split is a complete
statement (the caller's test: it parses, and undeclared text shows it is SQL rather than
prose), or the head of a T-SQL control-flow statement (IF/WHILE and their condition,
BEGIN, ELSE, END). So `select the drop table option` in a search box stays prose, while
`SELECT 1 DROP TABLE t` is two statements. Pure logic: no parser, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Callable

# Verbs that start a T-SQL statement: the destructive ones we look for, and the ones a
# batch may hold before them (SELECT, SET, DECLARE, IF ...), so each step of a chain can
# be split in turn. WITH is left out: it is as often a table hint, `WITH (NOLOCK)`.
_VERBS = (
    "DROP|TRUNCATE|DELETE|UPDATE|INSERT|MERGE|ALTER|CREATE|GRANT|REVOKE|DENY|EXEC|EXECUTE|SHUTDOWN|KILL"
    "|BACKUP|RESTORE|DBCC|RECONFIGURE|BULK|SETUSER|SELECT|SET|DECLARE|IF|WHILE|BEGIN|END|ELSE|PRINT|USE"
    "|WAITFOR|RETURN|OPEN|FETCH|CLOSE|DEALLOCATE|THROW|RAISERROR|ENABLE|DISABLE"
)
# T-SQL's tokens that may hold a verb or a `;` without it counting: strings, "quoted" and
# [bracketed] identifiers (`[a;]` is a column), comments. An unterminated one runs to the
# end, as the server would read it. A verb is a word of its own: not `@update`, `#drop`,
# `dbo.delete` or `drop_date`.
_LEXING = re.compile(
    r"'(?:[^']|'')*+(?:'|\Z)|\"(?:[^\"]|\"\")*+(?:\"|\Z)|\[(?:[^\]]|\]\])*+(?:\]|\Z)|--[^\n]*+"
    r"|/\*(?:[^*]|\*(?!/))*+(?:\*/|\Z)|(?P<semi>;)|(?<![\w@#$.])(?P<verb>(?:" + _VERBS + r"))\b",
    re.DOTALL | re.IGNORECASE,
)
_ANY_VERB = re.compile(r"(?<![\w@#$.])(?:" + _VERBS + r")\b", re.IGNORECASE)
# Words that open or close a block or a branch: what precedes a statement without being one.
_BLOCK_TAIL = re.compile(
    r"(?:\s|\b(?:BEGIN(?:\s+(?:TRY|CATCH|TRAN(?:SACTION)?))?|END(?:\s+(?:TRY|CATCH))?|ELSE)\b)*+\Z",
    re.IGNORECASE,
)
_TAIL = 64
# A head ending in one of these words goes on into the verb: `CREATE TABLE t AS SELECT`,
# `INSERT INTO t SELECT`, `... UNION SELECT`, however leniently a parser reads the head.
_GOES_ON = re.compile(
    r"\b(?:AS|ON|IN|INTO|FROM|WHERE|AND|OR|NOT|BY|THEN|WHEN|JOIN|UNION|ALL|EXCEPT|INTERSECT|TO|FOR|WITH|IS"
    r"|LIKE|BETWEEN|SELECT|VALUES|RETURNS|RETURN|DO|INSTEAD|OF|AFTER|BEFORE|TABLE|EXISTS|DISTINCT|TOP"
    # `FOR UPDATE`, `DO UPDATE SET`, `ON DUPLICATE KEY UPDATE`, `ON DELETE SET NULL`
    r"|UPDATE|DELETE|INSERT|SET|KEY|CONFLICT|MATCHED)\s*\Z",
    re.IGNORECASE,
)
_CONDITION = re.compile(r"\A\s*(?:IF|WHILE)\b(?P<condition>.*)\Z", re.IGNORECASE | re.DOTALL)
# What prose lacks and a condition or a complete statement of SQL has: a number, an
# operator, a variable, a bracket or a quote.
_EVIDENCE = re.compile(r"[0-9@=<>()\[\]'*+%]")
_BLANK = " \t\r\n\f\v("


def has_inner_verb(text: str) -> bool:
    """Whether a statement verb appears after the start of `text`: a cheap test that
    spares texts with one verb the lexing and the parses."""
    first = _ANY_VERB.search(text)
    return first is not None and _ANY_VERB.search(text, first.end()) is not None


def statements(text: str, complete: Callable[[str], bool], declared: bool, limit: int) -> list[str]:
    """`text` split where SQL Server starts a new statement without a `;`, or [] where it
    does not. `complete(head)` says whether `head` is one or more whole statements; at
    most `limit` heads are tested, as each costs a parse."""
    pieces: list[str] = []
    start, tried, split = 0, 0, False
    for token in _LEXING.finditer(text):
        if token.group("semi"):
            pieces.append(text[start : token.start()])
            start = token.end()
            continue
        if not token.group("verb"):
            continue
        head = text[start : token.start()]
        if not head.strip(_BLANK):
            continue
        tried += 1
        if tried > limit:
            break
        if _ends_statement(head, complete, declared or split):
            pieces.append(head)
            start, split = token.start(), True
    pieces.append(text[start:])
    return [p for p in pieces if p.strip(_BLANK + ";")] if split else []


def _ends_statement(head: str, complete: Callable[[str], bool], trusted: bool) -> bool:
    """Whether a new statement may start after `head`. `trusted`: the text is declared SQL
    or an earlier split showed it is SQL, so block words alone need no evidence."""
    if _GOES_ON.search(head[-_TAIL:]) is not None:
        return False
    if complete(head):
        return True
    tail = head[-_TAIL:]  # block words are short: a bounded window keeps hostile blanks linear
    rest = head[: len(head) - len(tail) + _BLOCK_TAIL.search(tail).start()]  # IF ... ELSE, BEGIN, END TRY
    if not rest.strip(_BLANK):
        return trusted
    condition = _CONDITION.match(rest)
    if condition is not None:  # IF 1=1 <statement>, or IF 1=1 SELECT 1 ELSE <statement>
        return trusted or _EVIDENCE.search(condition.group("condition")) is not None
    return rest != head and _GOES_ON.search(rest[-_TAIL:]) is None and complete(rest)


def evidence(text: str) -> bool:
    """Whether `text` has a character of SQL that prose rarely has."""
    return _EVIDENCE.search(text) is not None
