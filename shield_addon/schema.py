"""audit.duckdb's tables and views as SQL text: the one place that knows the schema.

Pure: builds statements, runs none (no DuckDB import), so the store that writes and the
reader that asks share one definition. Decisions come from the shared vocabulary, so a
view's idea of "refused" is the export's and the report's.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from shield_addon import record
from shield_addon.core.model import LAPSED, NOT_FORWARDED, Decision, sql_in

CREATE_EVENTS = "CREATE TABLE IF NOT EXISTS events ({})".format(
    ", ".join(f"{name} {typ}" for name, typ in record.COLUMNS)
)

# The timeline's columns and how each folds a flow's events: the value at its first event,
# the last non-NULL value, or min/max. `flows` keeps these per flow (plus the seq range) and
# is folded batch by batch at ingest, so reading the timeline never regroups every event.
TIMELINE_FOLDS = (
    ("ts", "min"), ("flow_id", "key"), ("agent", "first"), ("method", "first"), ("host", "first"),
    ("path", "first"), ("service", "first"), ("action_type", "first"), ("operation", "first"),
    ("namespace", "first"), ("resource_name", "first"), ("tables", "first"), ("rule_id", "first"),
    ("verdict", "first"), ("decision", "last"), ("reviewer", "last"), ("decided_at", "last"),
    ("status_code", "last"), ("outcome", "last"), ("duration_ms", "max"), ("hold_id", "max"),
)
TIMELINE_COLUMNS = tuple(c for c, _ in TIMELINE_FOLDS)
FLOW_FOLDS = (*TIMELINE_FOLDS, ("first_seq", "min"), ("last_seq", "max"))

_AGGREGATE = {
    "key": "{src}",
    "first": "arg_min({src}, seq) AS {c}",
    "last": "arg_max({src}, seq) FILTER (WHERE {src} IS NOT NULL) AS {c}",
    "min": "min({src}) AS {c}",
    "max": "max({src}) AS {c}",
}


def fold_sql(source: str) -> str:
    """One row per flow of the events in `source`, with the columns of `flows`."""
    cols = [_AGGREGATE[how].format(src="seq" if c.endswith("_seq") else c, c=c) for c, how in FLOW_FOLDS]
    return f"SELECT {', '.join(cols)} FROM {source} WHERE flow_id IS NOT NULL GROUP BY flow_id"


MERGE = {
    "first": "coalesce(o.{c}, n.{c})",  # arg_min skips NULLs: the first non-NULL value
    "last": "coalesce(n.{c}, o.{c})",
    "min": "least(o.{c}, n.{c})",
    "max": "greatest(o.{c}, n.{c})",
}


def merge_sql(newer: str, older: str) -> str:
    """Flows folded from newer events (`newer`, every flow) merged with the same flows folded
    from older ones (`older`, LEFT JOINed: a flow may be new)."""
    cols = ["n.flow_id AS flow_id" if how == "key" else f"{MERGE[how].format(c=c)} AS {c}" for c, how in FLOW_FOLDS]
    return f"SELECT {', '.join(cols)} FROM {newer} n LEFT JOIN {older} o USING (flow_id)"


def continuing_sql(source: str) -> str:
    """Flows of `source` that may have older events: those without their `request` event
    in it. A flow's request is always its first event, so the others start in `source` and
    need no lookup (an index lookup per id is what made reading and ingest slow)."""
    return (f"SELECT flow_id FROM {source} WHERE flow_id IS NOT NULL GROUP BY flow_id "
            "HAVING NOT bool_or(stage = 'request')")


def sql_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def sql_list(values: Sequence[Any]) -> str:
    """A literal IN list: DuckDB answers `flow_id IN ('a', 'b')` from the PRIMARY KEY index,
    not `IN (subquery)` or `= ANY(?)` (measured by scripts/bench_queries.py)."""
    return "(" + ", ".join(sql_str(v) if isinstance(v, str) else str(int(v)) for v in values) + ")" if values else "(NULL)"


LITERAL_IN_MAX = 5000  # ids a statement lists literally (index lookups); beyond, a hash join is cheaper


def id_filter(column: str, ids: Sequence[Any], subquery: str) -> str:
    """`column IN (...)`: a literal list while short, so DuckDB uses the index; else the subquery."""
    return f"{column} IN {sql_list(ids)}" if len(ids) <= LITERAL_IN_MAX else f"{column} IN ({subquery})"


_TYPES = dict(record.COLUMNS) | {"first_seq": "BIGINT", "last_seq": "BIGINT"}
CREATE_FLOWS = "CREATE TABLE flows ({}, PRIMARY KEY (flow_id))".format(
    ", ".join(f"{c} {_TYPES[c]}" for c, _ in FLOW_FOLDS))

# `show` by an id prefix: DuckDB answers only equality from an index and `flows` is in time
# order (ids random in every row group), so a prefix scanned all 4.85 M ids at 10 M events.
# Each id's first HEAD_CHARS characters, a short column DuckDB filters by equality at once;
# derived from `flows` like `flows` from `events`, only a way in, never evidence.
HEAD_CHARS = 4
CREATE_FLOW_HEADS = "CREATE TABLE flow_heads (head VARCHAR, flow_id VARCHAR)"


def heads_sql(source: str) -> str:
    return f"SELECT left(flow_id, {HEAD_CHARS}) AS head, flow_id FROM {source}"


# ---------------------------------------------------------------- views

_APPROVED, _ALLOWED, _EXPIRED = (f"'{d}'" for d in (Decision.APPROVED, Decision.ALLOWED, Decision.EXPIRED))

TIMELINE_SQL = f"SELECT {', '.join(TIMELINE_COLUMNS)} FROM flows"

HOLDS_SQL = f"""
WITH r AS (
    SELECT coalesce(hold_id, flow_id) AS hid, * FROM events
    WHERE stage = 'request' AND verdict = 'hold' AND mode = 'enforce' AND (decision IS NULL OR hold_id IS NOT NULL)
), a AS (
    SELECT hid, min(ts) AS held_at, arg_min(flow_id, seq) AS flow_id, arg_min(agent, seq) AS agent,
        arg_min(method, seq) AS method, arg_min(host, seq) AS host, arg_min(path, seq) AS path,
        arg_min(service, seq) AS service, arg_min(operation, seq) AS operation, arg_min(namespace, seq) AS namespace,
        arg_min(resource_name, seq) AS resource_name, arg_min(tables, seq) AS tables, arg_min(rule_id, seq) AS rule_id,
        arg_min(severity, seq) AS severity, count(*) AS attempts, bool_or(decision = {_APPROVED}) AS used,
        bool_or(hold_id IS NOT NULL) AS retry_mode
    FROM r GROUP BY hid
), d AS (
    SELECT coalesce(hold_id, flow_id) AS hid, arg_max(decision, seq) AS decision, arg_max(reviewer, seq) AS reviewer,
        arg_max(decided_at, seq) AS decided_at, arg_max(reviewer_comment, seq) AS reviewer_comment,
        arg_max(edited, seq) AS edited, arg_max(ts, seq) AS decision_ts
    FROM events WHERE stage = 'decision' AND decision <> {_EXPIRED} GROUP BY 1
), x AS (
    SELECT DISTINCT hold_id AS hid FROM events WHERE stage = 'decision' AND decision = {_EXPIRED}
), o AS (
    SELECT coalesce(hold_id, flow_id) AS hid, arg_max(status_code, seq) AS status_code, arg_max(outcome, seq) AS outcome
    FROM events WHERE stage IN ('response', 'error') GROUP BY 1
)
SELECT a.held_at, a.flow_id, CASE WHEN a.retry_mode THEN a.hid END AS hold_id, a.agent, a.method, a.host, a.path,
    a.service, a.operation, a.namespace, a.resource_name, a.tables, a.rule_id, a.severity,
    d.decision, d.reviewer, d.decided_at, d.reviewer_comment, d.edited,
    round(date_diff('millisecond', a.held_at, coalesce(d.decided_at, d.decision_ts)) / 1000, 3) AS wait_s,
    a.attempts,
    CASE WHEN NOT a.retry_mode OR d.decision IS DISTINCT FROM {_APPROVED} THEN NULL
         WHEN a.used THEN 'used' WHEN x.hid IS NOT NULL THEN 'expired' ELSE 'unused' END AS approval,
    o.status_code, o.outcome
FROM a LEFT JOIN d USING (hid) LEFT JOIN x USING (hid) LEFT JOIN o USING (hid)
"""

# Held now: no decision and no outcome yet. After a crash such flows stay here: they were
# held when the proxy died, never forwarded, and have no decision to record.
PENDING_SQL = "SELECT held_at, flow_id, hold_id, agent, method, host, path, operation, namespace, rule_id, severity, " \
              "attempts FROM holds WHERE decision IS NULL AND (outcome IS NULL OR hold_id IS NOT NULL)"

# A flow the rules held, whatever became of it (a hold the rules later let through is not one).
HELD = f"verdict = 'hold' AND decision IS DISTINCT FROM {_ALLOWED}"

# What by_agent and by_reviewer count, here and in the fleet's PostgreSQL views (fleet/views.py).
AGENT_COUNTS = f"""count(*) AS flows,
    count(*) FILTER (WHERE decision = {_ALLOWED}) AS allowed,
    count(*) FILTER (WHERE {HELD}) AS held,
    count(*) FILTER (WHERE decision = {_APPROVED}) AS approved,
    count(*) FILTER (WHERE decision = '{Decision.DENIED}') AS denied,
    count(*) FILTER (WHERE decision = '{Decision.BLOCKED}') AS blocked,
    count(*) FILTER (WHERE {sql_in("decision", LAPSED)}) AS killed_or_lapsed,
    min(ts) AS first_seen, max(ts) AS last_seen"""
REVIEWER_COUNTS = f"""count(*) AS decisions,
    count(*) FILTER (WHERE decision = {_APPROVED}) AS approved,
    count(*) FILTER (WHERE decision = '{Decision.DENIED}') AS denied,
    count(*) FILTER (WHERE decision = '{Decision.KILLED}') AS killed"""

BY_AGENT_SQL = f"""
SELECT agent, {AGENT_COUNTS}
FROM timeline GROUP BY agent
"""

BY_REVIEWER_SQL = f"""
SELECT reviewer, {REVIEWER_COUNTS},
    median(wait_s) AS median_wait_s, max(wait_s) AS max_wait_s,
    min(decided_at) AS first_decision, max(decided_at) AS last_decision
FROM holds WHERE reviewer IS NOT NULL GROUP BY reviewer
"""

# Every flow that did not reach its server on its decision: refused, or ended without a yes.
DENIALS_SQL = f"SELECT * FROM timeline WHERE {sql_in('decision', NOT_FORWARDED)}"

VIEWS = {  # in dependency order
    "timeline": TIMELINE_SQL, "holds": HOLDS_SQL, "pending": PENDING_SQL,
    "by_agent": BY_AGENT_SQL, "by_reviewer": BY_REVIEWER_SQL, "denials": DENIALS_SQL,
}
# The views each view reads (besides the tables): a reader creates only what its question needs.
VIEW_NEEDS = {"pending": ("holds",), "by_agent": ("timeline",), "by_reviewer": ("holds",), "denials": ("timeline",)}


def views_for(names: Sequence[str]) -> list[str]:
    """`names` and the views they read, in VIEWS' (dependency) order."""
    wanted = set(names)
    for name in names:
        wanted.update(VIEW_NEEDS.get(name, ()))
    return [v for v in VIEWS if v in wanted]

# ---------------------------------------------------------------- checkpoints

CHECKPOINT_COLUMNS = (("chain_id", "VARCHAR"), ("seq", "BIGINT"), ("row_hash", "VARCHAR"), ("time", "TIMESTAMP"),
                      ("key_id", "VARCHAR"), ("sig", "VARCHAR"))
CREATE_CHECKPOINTS = "CREATE TABLE IF NOT EXISTS checkpoints ({})".format(
    ", ".join(f"{n} {t}" for n, t in CHECKPOINT_COLUMNS))


def read_checkpoints_sql(log: Path) -> str:
    cols = "{" + ", ".join(f"'{n}': '{t}'" for n, t in CHECKPOINT_COLUMNS) + "}"
    names = ", ".join(n for n, _ in CHECKPOINT_COLUMNS)
    return (f"SELECT {names} FROM read_json({sql_str(str(log))}, format='newline_delimited', columns={cols}, "
            f"ignore_errors=true) WHERE seq IS NOT NULL")


# ---------------------------------------------------------------- the journal in SQL

# read_json must read JSON-typed columns as text: as JSON it would re-quote them and
# the stored text would no longer be what was hashed.
_READ_COLUMNS = "{" + ", ".join(
    f"'{n}': '{'VARCHAR' if t == 'JSON' else t}'" for n, t in record.COLUMNS
) + "}"
_SELECT_COLUMNS = ", ".join(f"{n}::JSON AS {n}" if t == "JSON" else n for n, t in record.COLUMNS)


def read_journal_sql(files: Sequence[Path]) -> str:
    """A SELECT of journal rows with the events table's types (bind seq bounds as ?, ?)."""
    file_list = "[" + ", ".join(sql_str(str(f)) for f in files) + "]"
    return (
        f"SELECT {_SELECT_COLUMNS} FROM read_json({file_list}, format='newline_delimited', "
        f"columns={_READ_COLUMNS}, ignore_errors=true) WHERE seq > ? AND seq <= ?"
    )


# ---------------------------------------------------------------- the chain in SQL


def _canonical_text(name: str, typ: str) -> str:
    """SQL for a column's text in the canonical form (record.canonical, version 1)."""
    if typ == "TIMESTAMP":
        return f"strftime({name}, '%Y-%m-%d %H:%M:%S.%f')"
    if typ == "VARCHAR[]":
        return f"to_json({name})::VARCHAR"
    return f"{name}::VARCHAR"


CANONICAL_SQL = "concat(" + ", ".join(
    f"coalesce(strlen({_canonical_text(n, t)})::VARCHAR || ':' || {_canonical_text(n, t)}, "
    f"'{'' if n in record.LATER_COLUMNS else '-'}')"
    for n, t in record.COLUMNS if n != "row_hash"
) + ")"


def chain_check_sql(table: str = "events") -> str:
    """Every row's hash and link recomputed in SQL alone: (seq, hash_ok, link_ok)."""
    return (
        f"SELECT seq, sha256({CANONICAL_SQL}) = row_hash AS hash_ok, "
        f"prev_hash = coalesce(lag(row_hash) OVER (PARTITION BY chain_id ORDER BY seq), '{record.GENESIS}') AS link_ok "
        f"FROM {table}"
    )


def chain_rows_sql(seqs: Sequence[int]) -> str:
    """(seq, row_hash, prev_hash, hash_ok) of the events at `seqs` (bind the lowest and highest as ?, ?)."""
    return (f"SELECT seq, row_hash, prev_hash, sha256({CANONICAL_SQL}) = row_hash FROM events "
            f"WHERE seq BETWEEN ? AND ? AND seq IN {sql_list(seqs)}")
