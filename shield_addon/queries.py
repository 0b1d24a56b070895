"""The questions the reader asks, as SQL text over the schema's tables and views.

Pure like schema.py: statements and the one filter -> WHERE translation, no DuckDB. Every
value a user gives is bound as a parameter, never pasted into SQL.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from shield_addon.core.globs import glob_sql
from shield_addon.core.model import LAPSED, REFUSED, Decision, sql_in
from shield_addon.schema import HEAD_CHARS, HELD, chain_check_sql, fold_sql


class ReaderError(ValueError):
    """A question the trail cannot answer as asked: no such flow, an ambiguous id, a write in `sql`.
    Defined here, not in reader.py, so the CLI can catch it without importing DuckDB."""


# filter -> (timeline column, how it compares). Globs follow the rules' semantics:
# fnmatch syntax, case-insensitive, matching the whole value (core.globs).
FILTER_COLUMNS: dict[str, tuple[str, str]] = {
    "agent": ("agent", "glob"),
    "action_type": ("action_type", "eq"),
    "namespace": ("namespace", "glob"),
    "table": ("tables", "any_glob"),
    "reviewer": ("reviewer", "glob"),
    "decision": ("decision", "eq"),
    "rule": ("rule_id", "glob"),
    "host": ("host", "glob"),
    "service": ("service", "glob"),
    "flow": ("flow_id", "prefix"),
    "hold": ("hold_id", "prefix"),
}


@dataclass(frozen=True)
class Filters:
    """Which flows a command is about; None leaves a field out. since/until are naive UTC."""

    agent: str | None = None
    action_type: str | None = None
    namespace: str | None = None
    table: str | None = None
    reviewer: str | None = None
    decision: str | None = None
    rule: str | None = None
    host: str | None = None
    service: str | None = None
    flow: str | None = None
    hold: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def where(self) -> tuple[str, list[Any]]:
        """" WHERE ..." over the timeline (or "") and its parameters."""
        conds: list[str] = []
        params: list[Any] = []
        for name, (column, how) in FILTER_COLUMNS.items():
            value = getattr(self, name)
            if value is None:
                continue
            conds.append(_COMPARE[how].format(c=column))
            params.append(value)
        for name, op in (("since", ">="), ("until", "<")):
            if (value := getattr(self, name)) is not None:
                conds.append(f"ts {op} ?")
                params.append(value)
        return (" WHERE " + " AND ".join(conds) if conds else ""), params

    def given(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


NO_FILTER = Filters()

_COMPARE = {
    "glob": glob_sql("{c}"),
    # a list comprehension, not a lambda: its syntax is the same in every DuckDB since 0.8
    "any_glob": "list_bool_or([" + glob_sql("t") + " for t in {c}])",
    "prefix": "starts_with({c}, ?)",
    "eq": "{c} = ?",
}

# ---------------------------------------------------------------- timeline, flows, replay


def timeline_sql(where: str, limit: bool) -> str:
    """The timeline's flows, oldest first; with `limit` (bind it last) only the newest N."""
    sql = f"SELECT * FROM timeline{where}"
    if limit:
        sql = f"SELECT * FROM ({sql} ORDER BY ts DESC, flow_id DESC LIMIT ?)"
    return sql + " ORDER BY ts, flow_id"


def flow_exact_sql(source: str = "flows") -> str:
    """One flow by its whole id: `flow_id = ?` and nothing else, so DuckDB answers it from
    the PRIMARY KEY index (the session names the source, never the user)."""
    return f"SELECT flow_id, first_seq, last_seq FROM {source} WHERE flow_id = ?"


def flow_prefix_sql(bounded: bool) -> str:
    """The flows whose id starts with a prefix, in id order (bind prefix_range's bounds, the
    prefix, the limit). The range is a plain comparison DuckDB filters inside the scan;
    starts_with keeps the answer exact whatever the bounds."""
    upper = " AND flow_id < ?" if bounded else ""
    return (f"SELECT flow_id, first_seq, last_seq FROM flows WHERE flow_id >= ?{upper} AND starts_with(flow_id, ?) "
            "ORDER BY flow_id LIMIT ?")


def flow_ids_by_prefix_sql(sources: Sequence[str], bounded: bool) -> str:
    """The ids that start with a prefix in any of `sources`, in order (bind prefix_range's
    bounds and the prefix once per source, then the limit)."""
    cond = "flow_id >= ?" + (" AND flow_id < ?" if bounded else "") + " AND starts_with(flow_id, ?)"
    union = " UNION ALL ".join(f"SELECT flow_id FROM {s} WHERE {cond}" for s in sources)
    return f"SELECT DISTINCT flow_id FROM ({union}) ORDER BY flow_id LIMIT ?"


# Candidates for an id prefix: the ids with its first HEAD_CHARS characters (equality alone,
# the one filter DuckDB answers without reading every id), and the tail's ids.
FLOW_HEADS = "SELECT flow_id FROM audit.flow_heads WHERE head = ?"
TAIL_IDS_BY_PREFIX = "SELECT DISTINCT flow_id FROM journal_tail WHERE starts_with(flow_id, ?)"
HEADS_DISAGREE = f"""SELECT flow_id FROM (
    (SELECT left(flow_id, {HEAD_CHARS}) AS head, flow_id FROM audit.flows EXCEPT ALL SELECT head, flow_id FROM audit.flow_heads)
    UNION ALL
    (SELECT head, flow_id FROM audit.flow_heads EXCEPT ALL SELECT left(flow_id, {HEAD_CHARS}), flow_id FROM audit.flows)) LIMIT 1"""

# A flow's seq range among the journal's rows not yet in audit.duckdb.
FLOW_IN_TAIL = "SELECT flow_id, min(seq), max(seq) FROM journal_tail WHERE flow_id = ? GROUP BY flow_id"

_MAX_CHAR = 0x10FFFF
_SURROGATES = range(0xD800, 0xE000)  # not characters: UTF-8 cannot hold them


def prefix_range(prefix: str) -> tuple[str, str | None]:
    """(low, high): every string that starts with `prefix` is >= low and < high; high is
    None when nothing bounds it (an empty prefix, or one of only U+10FFFF). DuckDB orders
    VARCHAR by its UTF-8 bytes, which is code point order."""
    head = prefix.rstrip(chr(_MAX_CHAR))
    if not head:
        return prefix, None
    nxt = ord(head[-1]) + 1
    if nxt in _SURROGATES:
        nxt = _SURROGATES.stop
    return prefix, head[:-1] + chr(nxt)


FLOW_EVENTS = "SELECT * FROM events WHERE seq BETWEEN ? AND ? AND flow_id = ? ORDER BY seq"


def recorded_requests_sql(where: str) -> str:
    """The `request` events of the flows the filter selects, in order."""
    return ("SELECT e.* FROM events e SEMI JOIN (SELECT flow_id FROM timeline" + where + ") t USING (flow_id) "
            "WHERE e.stage = 'request' ORDER BY e.seq")


# ---------------------------------------------------------------- report

_APPROVED = f"decision = '{Decision.APPROVED}'"
_REFUSED, _LAPSED = sql_in("decision", REFUSED), sql_in("decision", LAPSED)
_GROUP_COUNTS = (f"count(*) AS n, count(*) FILTER (WHERE {HELD}), count(*) FILTER (WHERE {_APPROVED}), "
                 f"count(*) FILTER (WHERE {_REFUSED}), count(*) FILTER (WHERE {_LAPSED})")

# Each holds `{flows}` once: the filtered timeline, whose placeholders come before any other.
REPORT_SUMMARY = (f"SELECT count(*), count(*) FILTER (WHERE {HELD}), count(*) FILTER (WHERE {_APPROVED}), "
                  f"count(*) FILTER (WHERE {_REFUSED}), count(*) FILTER (WHERE {_LAPSED}), "
                  "count(*) FILTER (WHERE verdict = 'hold' AND decision IS NULL), min(ts), max(ts) FROM {flows}")
_DECISION_OR_STATE = "coalesce(decision, CASE WHEN verdict = 'hold' THEN 'pending' ELSE '(none)' END)"
REPORT_BY_DECISION = f"SELECT {_DECISION_OR_STATE} AS k, count(*) AS n FROM {{flows}} GROUP BY k ORDER BY n DESC, k"
# `{column}` comes from REPORT_GROUPS only, never from the user.
REPORT_BY = ("SELECT {column} AS k, " + _GROUP_COUNTS.replace("{", "{{").replace("}", "}}")
             + ", count(*) OVER () FROM {{flows}} GROUP BY k ORDER BY n DESC, k LIMIT ?")
REPORT_GROUPS = {"agent": "agent", "rule": "rule_id"}
REPORT_BUCKETS = (f"SELECT CAST(floor(epoch(ts) / ?) AS BIGINT) AS b, count(*), count(*) FILTER (WHERE {HELD}) "
                  "FROM {flows} GROUP BY b ORDER BY b")
REPORT_FLOWS = ("SELECT ts, flow_id, agent, method, host, path, service, operation, namespace, resource_name, tables, "
                "rule_id, verdict, decision, reviewer, status_code, outcome, duration_ms FROM {flows} "
                "ORDER BY ts, flow_id LIMIT ?")


def report_holds_sql(where: str) -> str:
    return ("SELECT held_at, flow_id, agent, rule_id, severity, decision, reviewer, wait_s, edited, reviewer_comment "
            f"FROM holds WHERE flow_id IN (SELECT flow_id FROM timeline{where}) ORDER BY held_at, flow_id LIMIT ?")


def report_by_sql(group: str) -> str:
    return REPORT_BY.format(column=REPORT_GROUPS[group])


# ---------------------------------------------------------------- export


def export_flows_sql(where: str) -> str:
    """The ids of the flows a filter selects, materialised once (bind the filter's parameters)."""
    return f"CREATE OR REPLACE TEMP TABLE export_flows AS SELECT flow_id FROM timeline{where}"


def export_rows_sql(filtered: bool) -> str:
    """A view, not a copy: at 10 M events a temporary table passed 12 GiB (scripts/bench_queries.py).
    Without a filter every event, rule loads included."""
    select = "SELECT e.* FROM events e SEMI JOIN export_flows f USING (flow_id)" if filtered else "SELECT * FROM events"
    return f"CREATE OR REPLACE TEMP VIEW export_rows AS {select}"


EXPORT_RANGE = "SELECT min(seq), max(seq), count(*), list(DISTINCT chain_id) FROM export_rows"
EXPORT_CHAIN = "SELECT any_value(chain_id) FROM export_rows"
EXPORT_EVENTS = "SELECT * FROM export_rows ORDER BY seq"


def export_parquet_sql(out: Path, chain: str, quote: Any) -> str:
    """Hive-partitioned by date, file names carrying the chain id; no ORDER BY, which would
    sort every row (readers order by seq)."""
    return (f"COPY (SELECT *, strftime(ts, '%Y-%m-%d') AS date FROM export_rows) TO {quote(str(out))} "
            f"(FORMAT parquet, PARTITION_BY (date), COMPRESSION zstd, OVERWRITE_OR_IGNORE, "
            f"FILENAME_PATTERN 'events-{chain}-{{i}}')")


# One row per flow for OCSF: the timeline's columns with the request event's and the decision's.
EXPORT_FLOWS = """
SELECT t.*, r.seq AS request_seq, r.row_hash AS request_row_hash, r.chain_id, r.client_ip, r.port, r.url, r.scheme,
       r.resource_type, r.matched_rules, r.mode, r.ruleset_sha256, r.severity, r.request_sha256,
       d.reviewer_comment, d.edited, last.seq AS last_seq
FROM timeline t
JOIN (SELECT * FROM export_rows WHERE stage = 'request') r USING (flow_id)
LEFT JOIN (SELECT * FROM export_rows WHERE stage = 'decision') d USING (flow_id)
LEFT JOIN (SELECT flow_id, max(seq) AS seq FROM export_rows GROUP BY flow_id) last USING (flow_id)
ORDER BY r.seq
"""

# ---------------------------------------------------------------- verify

FIRST_EDITED_IN_STORE = f"SELECT seq FROM ({chain_check_sql('audit.events')}) WHERE NOT hash_ok ORDER BY seq LIMIT 1"
# audit.duckdb's flows must be exactly what its events fold to. MATERIALIZED: the fold reads
# every event; it is compared both ways, but computed once.
FLOWS_DISAGREE = (f"WITH folded AS MATERIALIZED ({fold_sql('audit.events')}) "
                  "SELECT flow_id, first_seq FROM ((SELECT * FROM audit.flows EXCEPT ALL SELECT * FROM folded) "
                  "UNION ALL (SELECT * FROM folded EXCEPT ALL SELECT * FROM audit.flows)) "
                  "ORDER BY first_seq LIMIT 1")


def journal_hashes_sql(read_journal: str) -> str:
    """(seq, row_hash) of every journal row, as a temp table `j` (bind the seq bounds)."""
    return f"CREATE TEMP TABLE j AS SELECT seq, row_hash FROM ({read_journal})"


JOURNAL_DISAGREES = ("SELECT e.seq, j.seq IS NULL FROM audit.events e LEFT JOIN j USING (seq) "
                     "WHERE j.row_hash IS DISTINCT FROM e.row_hash ORDER BY e.seq LIMIT 1")
