"""audit.duckdb: schema, ingest from the journal, views, and the reader the CLI shares.

DuckDB lets one process write a file and nobody read it meanwhile (notes/duckdb.md §1),
so the proxy never keeps it open: the ingester opens it, appends the journal's new
lines in one statement, and closes it. Readers attach it read-only between batches
and add the journal's newest lines themselves, so they always see the live tail.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import duckdb

from shield_addon import journal, record

log = logging.getLogger(__name__)

DB_NAME = "audit.duckdb"
CHECKPOINT_LOG = "checkpoints.log"
JOURNAL_DIR = "journal"
LOCK_WAIT = 20.0  # seconds a reader waits for the ingester to let go of the file

_CREATE_EVENTS = "CREATE TABLE IF NOT EXISTS events ({})".format(
    ", ".join(f"{name} {typ}" for name, typ in record.COLUMNS)
)

TIMELINE_SQL = """
SELECT
    min(ts) AS ts,
    flow_id,
    arg_min(agent, seq) AS agent,
    arg_min(method, seq) AS method,
    arg_min(host, seq) AS host,
    arg_min(path, seq) AS path,
    arg_min(service, seq) AS service,
    arg_min(action_type, seq) AS action_type,
    arg_min(operation, seq) AS operation,
    arg_min(namespace, seq) AS namespace,
    arg_min(resource_name, seq) AS resource_name,
    arg_min(tables, seq) AS tables,
    arg_min(rule_id, seq) AS rule_id,
    arg_min(verdict, seq) AS verdict,
    arg_max(decision, seq) FILTER (WHERE decision IS NOT NULL) AS decision,
    arg_max(reviewer, seq) FILTER (WHERE reviewer IS NOT NULL) AS reviewer,
    arg_max(decided_at, seq) FILTER (WHERE decided_at IS NOT NULL) AS decided_at,
    arg_max(status_code, seq) FILTER (WHERE status_code IS NOT NULL) AS status_code,
    arg_max(outcome, seq) FILTER (WHERE outcome IS NOT NULL) AS outcome,
    max(duration_ms) AS duration_ms,
    max(hold_id) AS hold_id
FROM events
WHERE flow_id IS NOT NULL
GROUP BY flow_id
"""

HOLDS_SQL = """
WITH r AS (
    SELECT coalesce(hold_id, flow_id) AS hid, * FROM events
    WHERE stage = 'request' AND verdict = 'hold' AND mode = 'enforce' AND (decision IS NULL OR hold_id IS NOT NULL)
), a AS (
    SELECT hid, min(ts) AS held_at, arg_min(flow_id, seq) AS flow_id, arg_min(agent, seq) AS agent,
        arg_min(method, seq) AS method, arg_min(host, seq) AS host, arg_min(path, seq) AS path,
        arg_min(service, seq) AS service, arg_min(operation, seq) AS operation, arg_min(namespace, seq) AS namespace,
        arg_min(resource_name, seq) AS resource_name, arg_min(tables, seq) AS tables, arg_min(rule_id, seq) AS rule_id,
        arg_min(severity, seq) AS severity, count(*) AS attempts, bool_or(decision = 'approved') AS used,
        bool_or(hold_id IS NOT NULL) AS retry_mode
    FROM r GROUP BY hid
), d AS (
    SELECT coalesce(hold_id, flow_id) AS hid, arg_max(decision, seq) AS decision, arg_max(reviewer, seq) AS reviewer,
        arg_max(decided_at, seq) AS decided_at, arg_max(reviewer_comment, seq) AS reviewer_comment,
        arg_max(edited, seq) AS edited, arg_max(ts, seq) AS decision_ts
    FROM events WHERE stage = 'decision' AND decision <> 'expired' GROUP BY 1
), x AS (
    SELECT DISTINCT hold_id AS hid FROM events WHERE stage = 'decision' AND decision = 'expired'
), o AS (
    SELECT coalesce(hold_id, flow_id) AS hid, arg_max(status_code, seq) AS status_code, arg_max(outcome, seq) AS outcome
    FROM events WHERE stage IN ('response', 'error') GROUP BY 1
)
SELECT a.held_at, a.flow_id, CASE WHEN a.retry_mode THEN a.hid END AS hold_id, a.agent, a.method, a.host, a.path,
    a.service, a.operation, a.namespace, a.resource_name, a.tables, a.rule_id, a.severity,
    d.decision, d.reviewer, d.decided_at, d.reviewer_comment, d.edited,
    round(date_diff('millisecond', a.held_at, coalesce(d.decided_at, d.decision_ts)) / 1000, 3) AS wait_s,
    a.attempts,
    CASE WHEN NOT a.retry_mode OR d.decision IS DISTINCT FROM 'approved' THEN NULL
         WHEN a.used THEN 'used' WHEN x.hid IS NOT NULL THEN 'expired' ELSE 'unused' END AS approval,
    o.status_code, o.outcome
FROM a LEFT JOIN d USING (hid) LEFT JOIN x USING (hid) LEFT JOIN o USING (hid)
"""

# Held now: no decision and no outcome yet. After a crash such flows stay here: they were
# held when the proxy died, never forwarded, and have no decision to record.
PENDING_SQL = "SELECT held_at, flow_id, hold_id, agent, method, host, path, operation, namespace, rule_id, severity, " \
              "attempts FROM holds WHERE decision IS NULL AND (outcome IS NULL OR hold_id IS NOT NULL)"

BY_AGENT_SQL = """
SELECT agent, count(*) AS flows,
    count(*) FILTER (WHERE decision = 'allowed') AS allowed,
    count(*) FILTER (WHERE verdict = 'hold' AND decision IS DISTINCT FROM 'allowed') AS held,
    count(*) FILTER (WHERE decision = 'approved') AS approved,
    count(*) FILTER (WHERE decision = 'denied') AS denied,
    count(*) FILTER (WHERE decision = 'blocked') AS blocked,
    count(*) FILTER (WHERE decision IN ('killed', 'timed_out', 'abandoned')) AS killed_or_lapsed,
    min(ts) AS first_seen, max(ts) AS last_seen
FROM timeline GROUP BY agent
"""

BY_REVIEWER_SQL = """
SELECT reviewer, count(*) AS decisions,
    count(*) FILTER (WHERE decision = 'approved') AS approved,
    count(*) FILTER (WHERE decision = 'denied') AS denied,
    count(*) FILTER (WHERE decision = 'killed') AS killed,
    median(wait_s) AS median_wait_s, max(wait_s) AS max_wait_s,
    min(decided_at) AS first_decision, max(decided_at) AS last_decision
FROM holds WHERE reviewer IS NOT NULL GROUP BY reviewer
"""

DENIALS_SQL = "SELECT * FROM timeline WHERE decision IN ('denied', 'blocked', 'timed_out', 'killed')"

VIEWS = {  # in dependency order
    "timeline": TIMELINE_SQL, "holds": HOLDS_SQL, "pending": PENDING_SQL,
    "by_agent": BY_AGENT_SQL, "by_reviewer": BY_REVIEWER_SQL, "denials": DENIALS_SQL,
}

CHECKPOINT_COLUMNS = (("chain_id", "VARCHAR"), ("seq", "BIGINT"), ("row_hash", "VARCHAR"), ("time", "TIMESTAMP"),
                      ("key_id", "VARCHAR"), ("sig", "VARCHAR"))
_CREATE_CHECKPOINTS = "CREATE TABLE IF NOT EXISTS checkpoints ({})".format(
    ", ".join(f"{n} {t}" for n, t in CHECKPOINT_COLUMNS))


def read_checkpoints_sql(log: Path) -> str:
    cols = "{" + ", ".join(f"'{n}': '{t}'" for n, t in CHECKPOINT_COLUMNS) + "}"
    names = ", ".join(n for n, _ in CHECKPOINT_COLUMNS)
    return (f"SELECT {names} FROM read_json({sql_str(str(log))}, format='newline_delimited', columns={cols}, "
            f"ignore_errors=true) WHERE seq IS NOT NULL")

# read_json must read JSON-typed columns as text: as JSON it would re-quote them and
# the stored text would no longer be what was hashed (notes/duckdb.md §5.2).
_READ_COLUMNS = "{" + ", ".join(
    f"'{n}': '{'VARCHAR' if t == 'JSON' else t}'" for n, t in record.COLUMNS
) + "}"
_SELECT_COLUMNS = ", ".join(f"{n}::JSON AS {n}" if t == "JSON" else n for n, t in record.COLUMNS)


def _canonical_text(name: str, typ: str) -> str:
    """SQL for a column's text in the canonical form (record.canonical, version 1)."""
    if typ == "TIMESTAMP":
        return f"strftime({name}, '%Y-%m-%d %H:%M:%S.%f')"
    if typ == "VARCHAR[]":
        return f"to_json({name})::VARCHAR"
    return f"{name}::VARCHAR"


CANONICAL_SQL = "concat(" + ", ".join(
    f"coalesce(strlen({_canonical_text(n, t)})::VARCHAR || ':' || {_canonical_text(n, t)}, '-')"
    for n, t in record.COLUMNS if n != "row_hash"
) + ")"


def chain_check_sql(table: str = "events") -> str:
    """Every row's hash and link recomputed in SQL alone: (seq, hash_ok, link_ok)."""
    return (
        f"SELECT seq, sha256({CANONICAL_SQL}) = row_hash AS hash_ok, "
        f"prev_hash = coalesce(lag(row_hash) OVER (PARTITION BY chain_id ORDER BY seq), '{record.GENESIS}') AS link_ok "
        f"FROM {table}"
    )


def chain_status(con: duckdb.DuckDBPyConnection, seqs: list[int]) -> dict[int, tuple[bool, bool]]:
    """(hash_ok, link_ok) of the given events: each hash recomputed in SQL, each prev_hash
    compared with the row before it."""
    want = sorted(set(seqs) | {s - 1 for s in seqs if s > 1})
    rows = con.execute(f"SELECT seq, row_hash, prev_hash, sha256({CANONICAL_SQL}) = row_hash FROM events "
                       "WHERE seq IN (SELECT unnest(?::BIGINT[]))", [want]).fetchall()
    by_seq = {r[0]: r for r in rows}
    out = {}
    for s in seqs:
        _, _, prev, hash_ok = by_seq[s]
        before = by_seq.get(s - 1)
        expected = record.GENESIS if s == 1 else (before[1] if before else None)
        out[s] = (bool(hash_ok), prev == expected)
    return out


def sql_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def read_journal_sql(files: Sequence[Path]) -> str:
    """A SELECT of journal rows with the events table's types (bind seq bounds as ?, ?)."""
    file_list = "[" + ", ".join(sql_str(str(f)) for f in files) + "]"
    return (
        f"SELECT {_SELECT_COLUMNS} FROM read_json({file_list}, format='newline_delimited', "
        f"columns={_READ_COLUMNS}, ignore_errors=true) WHERE seq > ? AND seq <= ?"
    )


def tail_files(journal_dir: Path, after_seq: int) -> list[Path]:
    segs = journal.segments(journal_dir)
    return [p for i, (first, p) in enumerate(segs) if i + 1 == len(segs) or segs[i + 1][0] > after_seq + 1]


def is_lock_error(e: Exception) -> bool:
    text = str(e)
    return "lock" in text.lower() or "different configuration" in text


# ---------------------------------------------------------------- writing (the proxy)


def ingest(audit_dir: Path, upto_seq: int | None = None, setup: bool = True) -> int:
    """Append journal rows not yet in audit.duckdb; return how many. Raises duckdb
    errors, lock conflicts included: the caller retries later."""
    jdir = audit_dir / JOURNAL_DIR
    con = duckdb.connect(str(audit_dir / DB_NAME))
    try:
        if setup:
            con.execute(_CREATE_EVENTS)
            con.execute(_CREATE_CHECKPOINTS)
        log = audit_dir / CHECKPOINT_LOG
        if log.exists() and log.stat().st_size:
            con.execute(f"INSERT INTO checkpoints SELECT * FROM ({read_checkpoints_sql(log)}) "
                        "WHERE seq > (SELECT coalesce(max(seq), 0) FROM checkpoints) ORDER BY seq")
        for name, sql in VIEWS.items() if setup else ():
            con.execute(f"CREATE OR REPLACE VIEW {name} AS {sql}")
        # From the file, not from memory: a commit may have landed without us seeing it.
        have = con.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0]
        files = tail_files(jdir, have)
        if not files:
            return 0
        limit = upto_seq if upto_seq is not None else 2**62
        if limit <= have:
            return 0
        before = have
        con.execute("INSERT INTO events " + read_journal_sql(files) + " ORDER BY seq", [have, limit])
        after = con.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0]
        return after - before
    finally:
        con.close()


class Ingester:
    """A thread that keeps audit.duckdb at most `interval` seconds behind the journal."""

    def __init__(self, audit_dir: Path, committed: Callable[[], int], interval: float = 1.0):
        self.audit_dir = audit_dir
        self.committed = committed
        self.interval = interval
        self.done_seq = -1
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="shield-ingest", daemon=True)
        self.last_error: str | None = None
        self.set_up = False

    def start(self) -> None:
        self._thread.start()

    def stop(self, final: bool = True) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        if final:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not self.once():
                time.sleep(0.1)

    def once(self) -> bool:
        """One ingest round; False when the file was busy or broken (retry later)."""
        upto = self.committed()
        if upto == self.done_seq:
            return True
        try:
            # Tables and views once per file: recreating them every second cost a third of the ingest.
            ingest(self.audit_dir, upto, setup=not self.set_up)
            self.set_up = True
        except duckdb.Error as e:
            if not is_lock_error(e) and str(e) != self.last_error:
                log.warning("shield: audit.duckdb ingest failed (the journal keeps every event): %s", e)
            self.last_error = str(e)
            self.set_up = is_lock_error(e) and self.set_up  # after any other failure, set the file up again
            if "not a valid DuckDB database file" in str(e):
                self.set_aside()
            return False
        self.done_seq, self.last_error = upto, None
        return True

    def set_aside(self) -> None:
        """A file left unusable (e.g. created on a full disk) is only a copy of the journal:
        keep it for inspection under another name and rebuild from the journal."""
        db = self.audit_dir / DB_NAME
        aside = db.with_name(f"{DB_NAME}.broken-{time.strftime('%Y%m%dT%H%M%S')}")
        self.set_up = False
        try:
            db.rename(aside)
            log.warning("shield: %s was not a DuckDB file; moved to %s, rebuilding from the journal", db, aside.name)
        except OSError as e:
            log.warning("shield: could not move the broken %s aside: %s", db, e)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.once()


# ---------------------------------------------------------------- reading (CLI, analysts)


def connect_reader(audit_dir: Path, wait: float = LOCK_WAIT) -> duckdb.DuckDBPyConnection:
    """An in-memory session with `events` (audit.duckdb + the journal's newer lines) and
    the views. The file is attached read-only, so it never blocks another reader."""
    con = duckdb.connect(":memory:")
    db = audit_dir / DB_NAME
    have = 0
    sources = []
    if db.exists():
        _attach(con, db, wait)
        if con.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE database_name = 'audit' AND table_name = 'events'"
        ).fetchone()[0]:
            have = con.execute("SELECT coalesce(max(seq), 0) FROM audit.events").fetchone()[0]
            sources.append("SELECT * FROM audit.events")
    files = tail_files(audit_dir / JOURNAL_DIR, have)
    if files:
        con.execute("CREATE TEMP TABLE journal_tail AS " + read_journal_sql(files), [have, 2**62])
        sources.append("SELECT * FROM journal_tail")
    if not sources:
        con.execute("CREATE TEMP TABLE journal_tail (" + ", ".join(f"{n} {t}" for n, t in record.COLUMNS) + ")")
        sources.append("SELECT * FROM journal_tail")
    con.execute("CREATE TEMP VIEW events AS " + " UNION ALL ".join(sources))
    log = audit_dir / CHECKPOINT_LOG
    if log.exists() and log.stat().st_size:  # the log, not the table: it is never behind
        con.execute("CREATE TEMP VIEW checkpoints AS " + read_checkpoints_sql(log))
    else:
        con.execute(_CREATE_CHECKPOINTS.replace("CREATE TABLE IF NOT EXISTS", "CREATE TEMP TABLE"))
    for name, sql in VIEWS.items():
        con.execute(f"CREATE TEMP VIEW {name} AS {sql}")
    return con


def _attach(con: duckdb.DuckDBPyConnection, db: Path, wait: float) -> None:
    deadline = time.monotonic() + wait
    delay = 0.01
    while True:
        try:
            con.execute(f"ATTACH {sql_str(str(db))} AS audit (READ_ONLY)")
            return
        except duckdb.Error as e:
            if not is_lock_error(e) or time.monotonic() > deadline:
                raise
        time.sleep(delay)  # the ingester holds the file for well under a second
        delay = min(delay * 2, 0.2)


def rows_as_dicts(cur: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r)) for r in cur.fetchall()]
