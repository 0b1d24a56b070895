"""The analyst's views of the fleet's trail, in PostgreSQL, and the filter -> WHERE translation.

Pure like fleet/schema.py: SQL text and plain functions, no connection. The views mean what
audit.duckdb's views mean (shield_addon/schema.py), over every proxy's chain, with a `proxy`
column. They live in the database (a migration) rather than in each reader's session, so any
PostgreSQL client (psql, a dashboard) sees the same `timeline` and `holds` as `shield`, and
the read-only role can be granted them.

Every value a user gives is bound as a parameter (%s), never pasted into SQL.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from shield_addon.core.model import NOT_FORWARDED, Decision, sql_in
from shield_addon.queries import FILTER_COLUMNS
from shield_addon.schema import AGENT_COUNTS, REVIEWER_COUNTS, TIMELINE_COLUMNS, TIMELINE_FOLDS

if TYPE_CHECKING:
    from shield_addon.queries import Filters

# ---------------------------------------------------------------- folding a flow's events

_ARRAYS = frozenset({"tables", "matched_rules"})


def first_sql(column: str, order: str = "seq") -> str:
    """The first non-NULL value in `order` (DuckDB's arg_min, which skips NULLs). An array
    column goes through its text form: array_agg cannot stack arrays of different lengths."""
    if column in _ARRAYS:
        return f"((array_agg({column}::text ORDER BY {order}) FILTER (WHERE {column} IS NOT NULL))[1])::text[]"
    return f"(array_agg({column} ORDER BY {order}) FILTER (WHERE {column} IS NOT NULL))[1]"


def last_sql(column: str, order: str = "seq") -> str:
    """The last non-NULL value in `order` (arg_max ... FILTER (WHERE x IS NOT NULL))."""
    desc = ", ".join(f"{part.strip()} DESC" for part in order.split(","))
    return first_sql(column, desc)


_FOLD = {
    "key": "{c}",
    "first": "{first} AS {c}",
    "last": "{last} AS {c}",
    "min": "min({c}) AS {c}",
    "max": "max({c}) AS {c}",
}


def fold_sql(source: str) -> str:
    """One row per flow of the rows in `source` (chain_rows' columns), with the timeline's
    columns, its chain_id, and its seq range. A flow is a (chain, flow id): seqs of two
    chains are not comparable."""
    cols = [_FOLD[how].format(c=c, first=first_sql(c), last=last_sql(c)) for c, how in TIMELINE_FOLDS]
    return (f"SELECT chain_id, {', '.join(cols)}, min(seq) AS first_seq, max(seq) AS last_seq FROM {source} "
            "WHERE flow_id IS NOT NULL GROUP BY chain_id, flow_id")


TIMELINE_SELECT = ", ".join(f"f.{c}" for c in TIMELINE_COLUMNS) + ", p.name AS proxy"


def timeline_of(source: str) -> str:
    """The timeline's rows (its columns and `proxy`) folded from the rows in `source`."""
    return f"SELECT {TIMELINE_SELECT} FROM ({fold_sql(source)}) f LEFT JOIN proxies p USING (chain_id)"


# ---------------------------------------------------------------- the views

# The views' own schema: `holds` is already the approval queue's table in `public`. `shield sql
# --fleet` puts it first on the search_path, so the names are audit.duckdb's.
SCHEMA = "trail"

_APPROVED, _EXPIRED = (f"'{d}'" for d in (Decision.APPROVED, Decision.EXPIRED))
_ATTEMPT = "ts, seq"  # across proxies: seqs of two chains are not comparable, their times are


def _firsts(*columns: str) -> str:
    return ", ".join(f"{first_sql(c, _ATTEMPT)} AS {c}" for c in columns)


def _lasts(*columns: str) -> str:
    return ", ".join(f"{last_sql(c, _ATTEMPT)} AS {c}" for c in columns)


def _ms(t: str) -> str:
    """Whole milliseconds since the epoch: DuckDB's date_diff('millisecond') truncates each time
    to the millisecond before subtracting, and wait_s must agree with it."""
    return f"floor(extract(epoch FROM {t}) * 1000)"


# A retry-mode hold is one hold fleet-wide (its retries may land on any proxy): grouped by
# hold_id across chains; `proxy` is where it was first held.
HOLDS_SQL = f"""
WITH r AS (
    SELECT coalesce(c.hold_id, c.flow_id) AS hid, c.*, p.name AS proxy FROM chain_rows c LEFT JOIN proxies p USING (chain_id)
    WHERE c.stage = 'request' AND c.verdict = 'hold' AND c.mode = 'enforce' AND (c.decision IS NULL OR c.hold_id IS NOT NULL)
), a AS (
    SELECT hid, min(ts) AS held_at,
        {_firsts("flow_id", "proxy", "agent", "method", "host", "path", "service", "operation", "namespace",
                 "resource_name", "tables", "rule_id", "severity")},
        count(*) AS attempts, bool_or(decision = {_APPROVED}) AS used, bool_or(hold_id IS NOT NULL) AS retry_mode
    FROM r GROUP BY hid
), d AS (
    SELECT coalesce(hold_id, flow_id) AS hid,
        {_lasts("decision", "reviewer", "decided_at", "reviewer_comment", "edited")}, max(ts) AS decision_ts
    FROM chain_rows WHERE stage = 'decision' AND decision <> {_EXPIRED} GROUP BY 1
), x AS (
    SELECT DISTINCT hold_id AS hid FROM chain_rows WHERE stage = 'decision' AND decision = {_EXPIRED}
), o AS (
    SELECT coalesce(hold_id, flow_id) AS hid, {_lasts("status_code", "outcome")}
    FROM chain_rows WHERE stage IN ('response', 'error') GROUP BY 1
)
SELECT a.held_at, a.flow_id, CASE WHEN a.retry_mode THEN a.hid END AS hold_id, a.agent, a.method, a.host, a.path,
    a.service, a.operation, a.namespace, a.resource_name, a.tables, a.rule_id, a.severity,
    d.decision, d.reviewer, d.decided_at, d.reviewer_comment, d.edited,
    (({_ms('coalesce(d.decided_at, d.decision_ts)')} - {_ms('a.held_at')}) / 1000.0)::double precision AS wait_s,
    a.attempts,
    CASE WHEN NOT a.retry_mode OR d.decision IS DISTINCT FROM {_APPROVED} THEN NULL
         WHEN a.used THEN 'used' WHEN x.hid IS NOT NULL THEN 'expired' ELSE 'unused' END AS approval,
    o.status_code, o.outcome, a.proxy
FROM a LEFT JOIN d USING (hid) LEFT JOIN x USING (hid) LEFT JOIN o USING (hid)
"""

PENDING_SQL = ("SELECT held_at, flow_id, hold_id, agent, method, host, path, operation, namespace, rule_id, severity, "
               f"attempts, proxy FROM {SCHEMA}.holds WHERE decision IS NULL AND (outcome IS NULL OR hold_id IS NOT NULL)")

BY_AGENT_SQL = f"""
SELECT agent, {AGENT_COUNTS},
    array_agg(DISTINCT proxy ORDER BY proxy) FILTER (WHERE proxy IS NOT NULL) AS proxies
FROM {SCHEMA}.timeline GROUP BY agent
"""

BY_REVIEWER_SQL = f"""
SELECT reviewer, {REVIEWER_COUNTS},
    percentile_cont(0.5) WITHIN GROUP (ORDER BY wait_s) AS median_wait_s, max(wait_s) AS max_wait_s,
    min(decided_at) AS first_decision, max(decided_at) AS last_decision,
    array_agg(DISTINCT proxy ORDER BY proxy) FILTER (WHERE proxy IS NOT NULL) AS proxies
FROM {SCHEMA}.holds WHERE reviewer IS NOT NULL GROUP BY reviewer
"""

DENIALS_SQL = f"SELECT * FROM {SCHEMA}.timeline WHERE {sql_in('decision', NOT_FORWARDED)}"

VIEWS = {  # in dependency order, as in shield_addon/schema.py
    "timeline": timeline_of("chain_rows"), "holds": HOLDS_SQL, "pending": PENDING_SQL,
    "by_agent": BY_AGENT_SQL, "by_reviewer": BY_REVIEWER_SQL, "denials": DENIALS_SQL,
}
VIEW_NAMES = tuple(VIEWS)

# Migration 2 (fleet/schema.py); db.grant_readers grants the reader role SELECT on them.
MIGRATION = (
    f"CREATE SCHEMA {SCHEMA}",
    *(f"CREATE VIEW {SCHEMA}.{name} AS {sql}" for name, sql in VIEWS.items()),
)

# ---------------------------------------------------------------- filters


def glob_regex(pattern: str) -> str:
    """A glob as an anchored regex for PostgreSQL's `~*` (case-insensitive), read the way
    fnmatch (core.globs) reads it: * ? [abc] [!abc], a `[` without its `]` is itself."""
    out, i, n = ["^"], 0, len(pattern)
    while i < n:
        ch = pattern[i]
        i += 1
        if ch == "*":
            out.append(".*")
        elif ch == "?":
            out.append(".")
        elif ch == "[" and (end := _set_end(pattern, i)) is not None:
            body, i = pattern[i:end], end + 1
            negate = body.startswith("!")
            members = "".join(c if c == "-" or c.isalnum() else "\\" + c for c in body[1 if negate else 0:])
            out.append("[" + ("^" if negate else "") + members + "]")
        else:
            out.append(ch if ch.isalnum() or ch == "_" else "\\" + ch)
    out.append("$")
    return "".join(out)


def _set_end(pattern: str, i: int) -> int | None:
    """Where the set that starts at pattern[i] (after its `[`) ends, as fnmatch finds it."""
    j = i + (pattern[i:i + 1] == "!")
    j += pattern[j:j + 1] == "]"  # a `]` first is a member
    end = pattern.find("]", j)
    return end if end != -1 else None


_COMPARE = {
    "glob": "{c} ~* %s",
    "any_glob": "EXISTS (SELECT 1 FROM unnest({c}) AS t(v) WHERE t.v ~* %s)",
    "prefix": "starts_with({c}, %s)",
    "eq": "{c} = %s",
}


def where(filters: Filters) -> tuple[str, list[Any]]:
    """" WHERE ..." over the timeline (or "") and its parameters: queries.Filters.where's
    meaning, in PostgreSQL."""
    conds: list[str] = []
    params: list[Any] = []
    for name, (column, how) in FILTER_COLUMNS.items():
        value = getattr(filters, name)
        if value is None:
            continue
        conds.append(_COMPARE[how].format(c=column))
        params.append(glob_regex(value) if "glob" in how else value)
    for name, op in (("since", ">="), ("until", "<")):
        if (value := getattr(filters, name)) is not None:
            conds.append(f"ts {op} %s")
            params.append(value)
    return (" WHERE " + " AND ".join(conds) if conds else ""), params


def narrowed(filters: Filters) -> tuple[str, list[Any]]:
    """The chain_rows a filtered timeline needs to fold, as a FROM source, and its parameters.

    The timeline view folds every row before a WHERE on its (aggregated) ts can apply. But a
    flow's ts is its earliest event's, so a flow with ts >= since has an event with ts >=
    since (and one with ts < until): the flows with such an event (the ts index finds them)
    are the only candidates, and all their rows (the flow_id index) fold to exact values;
    `where` then keeps the right ones. Likewise a flow id prefix."""
    conds: list[str] = []
    params: list[Any] = []
    if filters.since is not None:
        conds.append("ts >= %s")
        params.append(filters.since)
    if filters.until is not None:
        conds.append("ts < %s")
        params.append(filters.until)
    if filters.flow is not None:
        conds.append("starts_with(flow_id, %s)")
        params.append(filters.flow)
    if not conds:
        return "chain_rows", []
    # An index lookup per candidate flow: joined plainly (IN, or a LATERAL the planner pulls
    # up), PostgreSQL read every row of the table instead; OFFSET 0 keeps the subquery apart.
    return (f"(SELECT r.* FROM (SELECT DISTINCT chain_id, flow_id FROM chain_rows WHERE {' AND '.join(conds)}) c "
            "CROSS JOIN LATERAL (SELECT * FROM chain_rows x WHERE x.flow_id = c.flow_id AND x.chain_id = c.chain_id "
            "OFFSET 0) r) c"), params


def timeline_sql(filters: Filters, limit: int | None) -> tuple[str, list[Any]]:
    """The filtered timeline, oldest first; with `limit`, only the newest N flows."""
    source, before = narrowed(filters)
    cond, params = where(filters)
    sql = f"SELECT * FROM ({timeline_of(source)}) t{cond}"
    if limit:
        sql = f"SELECT * FROM ({sql} ORDER BY ts DESC, flow_id DESC LIMIT %s) n"
        params = [*params, limit]
    return sql + " ORDER BY ts, flow_id", [*before, *params]


def flows_sql(filters: Filters) -> tuple[str, list[Any]]:
    """The filtered timeline as a subquery (for the report's counts), and its parameters."""
    source, before = narrowed(filters)
    cond, params = where(filters)
    return f"(SELECT * FROM ({timeline_of(source)}) t{cond})", [*before, *params]


def pg(sql: str) -> str:
    """One of queries.py's DuckDB statements with PostgreSQL's placeholders. Only for
    statements that use no DuckDB-only function and hold no `%` or `?` in a literal."""
    assert "%" not in sql, sql
    return sql.replace("?", "%s")

