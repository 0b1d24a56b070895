"""The raw fast path of sql_find must find exactly what the walk over the decoded JSON
finds, or it is a way around the SQL rules: checked on generated documents."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shield_addon.actions import sql_find

FRAGMENTS = ["DROP TABLE users", "select * from t", "hello", "delete my account", " ; DELETE FROM t", "x; drop table y",
             "/*!50000 DROP TABLE t*/", "-- c\nTRUNCATE t", "(SELECT 1)", "rollback", "Update: done", "{", "[1]", "",
             "UPDATE a SET b = 1", "with x as (select 1) select * from x", "naïve café", "tab\tDROP TABLE t", "\\",
             # escapes a server decodes before its parser reads: whitespace, slashes, control and wide characters
             "\fDROP TABLE t", "\r\nDELETE FROM t", "/* c */DROP TABLE t", "\u2028DROP TABLE t", "\u00a0DROP TABLE t",
             "\x00DROP TABLE t", "é; DROP TABLE t", "'; DROP TABLE t", "\bDROP TABLE t", "#c\nDROP TABLE t",
             "\ufeffDROP TABLE t", "\U0001f600; TRUNCATE t", "\\; DROP TABLE t", "\x7f; DROP TABLE t"]
KEYS = sorted(sql_find.SQL_KEYS) + ["Query", "SQL", "title", "text", "args", "data", "query_id", "sqlx"]

texts = st.lists(st.sampled_from(FRAGMENTS), min_size=1, max_size=3).map(" ".join)
leaves = texts | st.integers() | st.booleans() | st.none()
docs = st.recursive(leaves, lambda kids: st.lists(kids, max_size=4)
                    | st.lists(st.tuples(st.sampled_from(KEYS), kids), max_size=4), max_leaves=20)


def encode(doc: object, compact: bool, ascii_only: bool = False, slashes: bool = False) -> str:
    """JSON text of `doc`, where a list of (key, value) pairs is an object: duplicate keys
    stay. `ascii_only`: every non-ASCII character as a \\u escape; `slashes`: `/` as `\\/`,
    as PHP writes it (both legal JSON a server decodes to the same text)."""
    sep = "," if compact else ", "
    colon = ":" if compact else " : "
    if isinstance(doc, list) and doc and all(isinstance(p, tuple) for p in doc):
        return "{" + sep.join(_scalar(k, ascii_only, slashes) + colon + encode(v, compact, ascii_only, slashes)
                              for k, v in doc) + "}"
    if isinstance(doc, list):
        return "[" + sep.join(encode(v, compact, ascii_only, slashes) for v in doc) + "]"
    return _scalar(doc, ascii_only, slashes)


def _scalar(value: object, ascii_only: bool, slashes: bool) -> str:
    text = json.dumps(value, ensure_ascii=ascii_only)
    return text.replace("/", "\\/") if slashes else text


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(docs, st.booleans(), st.booleans(), st.booleans(), st.booleans())
def test_the_fast_path_finds_what_the_walk_finds(
    doc: object, pinned: bool, compact: bool, ascii_only: bool, slashes: bool
) -> None:
    body = encode(doc, compact, ascii_only, slashes).encode("utf-8", "surrogatepass")
    fast = sql_find.raw_json_texts(body, pinned)
    if fast is None:  # it declined: the walk reads this body
        return
    walked = [(t, h) for t, h in sql_find._json_texts(sql_find._decode_json(body), pinned)
              if h != sql_find.LOOSE or sql_find.candidate(t)]
    assert fast == walked


def test_the_fast_path_declines_what_it_cannot_read_exactly() -> None:
    assert sql_find.raw_json_texts(b'{"a": "{\\"query\\": \\"DROP TABLE t\\"}"}', False) is None  # JSON in a string
    assert sql_find.raw_json_texts(b'{"a": "\\u0044ROP TABLE t"}', False) is None  # escaped ASCII
    assert sql_find.raw_json_texts(b'{"sqls": ["DROP TABLE t"]}', False) is None  # a list under a SQL key
    assert sql_find.raw_json_texts(b'{"a": "DROP TABLE t"', False) is None  # not JSON
    assert sql_find.raw_json_texts(b'{"a": "DROP TABLE t", "query": "x"}', False) == [
        ("DROP TABLE t", sql_find.LOOSE), ("x", sql_find.FIELD)]
