"""audit.duckdb: schema, ingest from the journal, views, and the reader the CLI shares.

DuckDB lets one process write a file and nobody read it meanwhile (notes/duckdb.md §1),
so the proxy never keeps it open: the ingester opens it, appends the journal's new
lines in one statement, and closes it. Readers attach it read-only between batches
and add the journal's newest lines themselves, so they always see the live tail.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
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


_MERGE = {
    "first": "coalesce(o.{c}, n.{c})",  # arg_min skips NULLs: the first non-NULL value
    "last": "coalesce(n.{c}, o.{c})",
    "min": "least(o.{c}, n.{c})",
    "max": "greatest(o.{c}, n.{c})",
}


def merge_sql(newer: str, older: str) -> str:
    """Flows folded from newer events (`newer`, every flow) merged with the same flows folded
    from older ones (`older`, LEFT JOINed: a flow may be new)."""
    cols = ["n.flow_id AS flow_id" if how == "key" else f"{_MERGE[how].format(c=c)} AS {c}" for c, how in FLOW_FOLDS]
    return f"SELECT {', '.join(cols)} FROM {newer} n LEFT JOIN {older} o USING (flow_id)"


def sql_list(values: Sequence[Any]) -> str:
    """A literal IN list: DuckDB answers `flow_id IN ('a', 'b')` from the PRIMARY KEY index,
    not `IN (subquery)` or `= ANY(?)` (measured by scripts/bench_queries.py)."""
    return "(" + ", ".join(sql_str(v) if isinstance(v, str) else str(int(v)) for v in values) + ")" if values else "(NULL)"


TIMELINE_SQL = f"SELECT {', '.join(TIMELINE_COLUMNS)} FROM flows"

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
    if not want:
        return {}
    rows = con.execute(f"SELECT seq, row_hash, prev_hash, sha256({CANONICAL_SQL}) = row_hash FROM events "
                       f"WHERE seq BETWEEN ? AND ? AND seq IN {sql_list(want)}", [want[0], want[-1]]).fetchall()
    by_seq = {r[0]: r for r in rows}
    out = {}
    for s in seqs:
        _, _, prev, hash_ok = by_seq[s]
        before = by_seq.get(s - 1)
        expected = record.GENESIS if s == 1 else (before[1] if before else None)
        out[s] = (bool(hash_ok), prev == expected)
    return out


def memory_limit(share: float, cap: int) -> str:
    """A DuckDB memory_limit of `share` of this machine's RAM, at most `cap` bytes (DuckDB's
    default is 80 %, too much beside a proxy or for an export on a shared host)."""
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return f"{min(cap, int(ram * share)) >> 20}MB"


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


_TYPES = dict(record.COLUMNS) | {"first_seq": "BIGINT", "last_seq": "BIGINT"}
_CREATE_FLOWS = "CREATE TABLE flows ({}, PRIMARY KEY (flow_id))".format(
    ", ".join(f"{c} {_TYPES[c]}" for c, _ in FLOW_FOLDS))
LITERAL_IN_MAX = 5000  # ids a statement lists literally (index lookups); beyond, a hash join is cheaper


def id_filter(column: str, ids: Sequence[Any], subquery: str) -> str:
    """`column IN (...)`: a literal list while short, so DuckDB uses the index; else the subquery."""
    return f"{column} IN {sql_list(ids)}" if len(ids) <= LITERAL_IN_MAX else f"{column} IN ({subquery})"


def table_names(con: duckdb.DuckDBPyConnection, database: str | None = None) -> set[str]:
    """The tables of `database`, or of the connection's own file when None."""
    return {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables() "
                                      "WHERE database_name = coalesce(?, current_database())", [database]).fetchall()}


def set_up(con: duckdb.DuckDBPyConnection) -> None:
    """Tables and views of audit.duckdb; `flows` is built from `events` if the file predates it."""
    con.execute("BEGIN")
    con.execute(_CREATE_EVENTS)
    con.execute(_CREATE_CHECKPOINTS)
    if "flows" not in table_names(con):
        con.execute(_CREATE_FLOWS)
        con.execute(f"INSERT INTO flows {fold_sql('events')} ORDER BY ts, flow_id")
    for name, sql in VIEWS.items():
        con.execute(f"CREATE OR REPLACE VIEW {name} AS {sql}")
    con.execute("COMMIT")


def continuing_sql(source: str) -> str:
    """Flows of `source` that may have older events: those without their `request` event
    in it. A flow's request is always its first event, so the others start in `source` and
    need no lookup (an index lookup per id is what made reading and ingest slow)."""
    return (f"SELECT flow_id FROM {source} WHERE flow_id IS NOT NULL GROUP BY flow_id "
            "HAVING NOT bool_or(stage = 'request')")


def fold(con: duckdb.DuckDBPyConnection, after_seq: int, upto_seq: int, look_up_all: bool = False) -> None:
    """Fold the events (after_seq, upto_seq] into `flows`: update the flows they continue,
    insert the ones they start. `events` stays append-only; `flows` is derived from it, and
    `shield verify` checks that it still is. look_up_all: for a batch where a flow had a
    second request event (the insert then fails on the key), look every flow up."""
    batch = f"(SELECT * FROM events WHERE seq > {int(after_seq)} AND seq <= {int(upto_seq)})"
    con.execute(f"CREATE OR REPLACE TEMP TABLE batch_flows AS {fold_sql(batch)}")
    con.execute("CREATE OR REPLACE TEMP TABLE batch_continuing AS "
                + ("SELECT flow_id FROM batch_flows" if look_up_all else continuing_sql(batch)))
    ids = [r[0] for r in con.execute("SELECT flow_id FROM batch_continuing").fetchall()]
    old = [r[0] for r in con.execute(
        "SELECT flow_id FROM flows WHERE " + id_filter("flow_id", ids, "SELECT flow_id FROM batch_continuing")
    ).fetchall()] if ids else []
    if old:
        sets = ", ".join(f"{c} = {_MERGE[how].format(c=c)}" for c, how in FLOW_FOLDS if how != "key")
        con.execute(f"UPDATE flows AS o SET {sets} FROM batch_flows n WHERE o.flow_id = n.flow_id AND "
                    + id_filter("o.flow_id", old, "SELECT flow_id FROM batch_continuing"))
    new = "" if not old else " WHERE NOT " + id_filter("flow_id", old, "SELECT flow_id FROM flows")
    con.execute(f"INSERT INTO flows SELECT * FROM batch_flows{new} ORDER BY ts, flow_id")


@dataclass
class Cursor:
    """Where the last ingest stopped in the journal: the next one reads only newer bytes,
    not the whole current segment again (up to 64 MiB of JSON parsed every second)."""
    path: Path | None = None
    offset: int = 0  # just after the line of `seq`
    seq: int = 0


def line_seq(line: bytes) -> int | None:
    """The seq of a journal line, which the writer always puts first."""
    if line.startswith(b'{"seq":'):
        end = line.find(b",", 7)
        if end > 7 and line[7:end].isdigit():
            return int(line[7:end])
    return None


BATCH_BYTES = 32 << 20


def new_lines(jdir: Path, have: int, upto: int, cursor: Cursor, max_bytes: int = BATCH_BYTES) -> bytes:
    """The journal's lines with seq in (have, upto], up to about max_bytes, read from the
    cursor when it is still where `have` ends; the cursor moves past the last line taken."""
    out: list[bytes] = []
    size = 0
    for path in tail_files(jdir, have):
        if size >= max_bytes:
            break
        start = cursor.offset if path == cursor.path and cursor.seq == have else 0
        with open(path, "rb") as f:
            f.seek(start)
            data = f.read()
        pos = 0
        for line in data.splitlines(keepends=True):
            seq = line_seq(line)
            if seq is not None and seq > upto or not line.endswith(b"\n") or size >= max_bytes:
                break  # later lines are not committed yet, or are for the next batch
            pos += len(line)
            if seq is not None and seq > have:
                out.append(line)
                size += len(line)
                cursor.path, cursor.offset, cursor.seq = path, start + pos, seq
    return b"".join(out)


def append(con: duckdb.DuckDBPyConnection, batch: Path, have: int, limit: int, look_up_all: bool) -> int:
    """One transaction: the batch file's rows into `events`, folded into `flows`; the new max seq."""
    con.execute("BEGIN")
    con.execute("INSERT INTO events " + read_journal_sql([batch]) + " ORDER BY seq", [have, limit])
    after = con.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0]
    fold(con, have, after, look_up_all)
    con.execute("COMMIT")
    return after


def ingest(audit_dir: Path, upto_seq: int | None = None, setup: bool = True, cursor: Cursor | None = None) -> int:
    """Append journal rows not yet in audit.duckdb and fold them into `flows`, each batch in
    one transaction; return how many. Raises duckdb errors, lock conflicts included: the
    caller retries later."""
    con = duckdb.connect(str(audit_dir / DB_NAME))
    try:
        # Inside the proxy: one core and a bounded share of memory, whatever the batch (the
        # first start on a big file folds every event), so the event loop keeps its core.
        con.execute(f"SET threads = 1; SET memory_limit = '{memory_limit(0.25, 2 << 30)}'")
        if setup:
            set_up(con)
        log = audit_dir / CHECKPOINT_LOG
        if log.exists() and log.stat().st_size:
            con.execute(f"INSERT INTO checkpoints SELECT * FROM ({read_checkpoints_sql(log)}) "
                        "WHERE seq > (SELECT coalesce(max(seq), 0) FROM checkpoints) ORDER BY seq")
        limit = upto_seq if upto_seq is not None else 2**62
        moved = Cursor(**vars(cursor)) if cursor else Cursor()
        total = 0
        while True:  # batches of at most BATCH_BYTES: catching up after a long lock stays bounded
            # From the file, not from memory: a commit may have landed without us seeing it.
            have = con.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0]
            data = new_lines(audit_dir / JOURNAL_DIR, have, limit, moved) if limit > have else b""
            if not data:
                return total
            with tempfile.NamedTemporaryFile(suffix=".jsonl") as batch:
                batch.write(data)
                batch.flush()
                try:
                    after = append(con, Path(batch.name), have, limit, look_up_all=False)
                except duckdb.ConstraintException:
                    con.execute("ROLLBACK")  # a flow_id with two request events: not one of ours
                    after = append(con, Path(batch.name), have, limit, look_up_all=True)
            if after == have:
                return total  # nothing readable in the batch; read_json's ignore_errors skipped it
            total += after - have
            if cursor:
                cursor.path, cursor.offset, cursor.seq = moved.path, moved.offset, moved.seq
    finally:
        con.close()


INGEST_BACKOFF = 4
INGEST_WAIT_MAX = 10.0  # seconds


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
        self.cursor = Cursor()

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
            ingest(self.audit_dir, upto, setup=not self.set_up, cursor=self.cursor)
            self.set_up = True
        except (duckdb.Error, OSError) as e:  # OSError: no room for the batch file
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
        wait = self.interval
        while not self._stop.wait(wait):
            started = time.monotonic()
            self.once()
            # On a big file each batch costs more (DuckDB saves the flows index on close):
            # waiting INGEST_BACKOFF times as long as the last round took caps ingest at a
            # fifth of a core. Readers merge the journal tail, so they stay current anyway.
            # Capped: after a 30 s catch-up the next round must not wait two minutes.
            wait = max(self.interval, min(INGEST_WAIT_MAX, INGEST_BACKOFF * (time.monotonic() - started)))


# ---------------------------------------------------------------- reading (CLI, analysts)


def connect_reader(audit_dir: Path, wait: float = LOCK_WAIT) -> duckdb.DuckDBPyConnection:
    """An in-memory session with `events` and `flows` (audit.duckdb + the journal's newer
    lines) and the views. The file is attached read-only, so it never blocks another reader."""
    con = duckdb.connect(":memory:")
    db = audit_dir / DB_NAME
    have = 0
    tables: set[str] = set()
    if db.exists():
        _attach(con, db, wait)
        tables = table_names(con, "audit")
        if "events" in tables:
            have = con.execute("SELECT coalesce(max(seq), 0) FROM audit.events").fetchone()[0]
    files = tail_files(audit_dir / JOURNAL_DIR, have)
    if files:
        con.execute("CREATE TEMP TABLE journal_tail AS " + read_journal_sql(files), [have, 2**62])
    else:
        con.execute("CREATE TEMP TABLE journal_tail (" + ", ".join(f"{n} {t}" for n, t in record.COLUMNS) + ")")
    older = ["SELECT * FROM audit.events"] if "events" in tables else []
    con.execute("CREATE TEMP VIEW events AS " + " UNION ALL ".join([*older, "SELECT * FROM journal_tail"]))
    con.execute("CREATE TEMP VIEW flows AS " + (
        _flows_with_tail(con) if "flows" in tables else fold_sql("events")))
    log = audit_dir / CHECKPOINT_LOG
    if log.exists() and log.stat().st_size:  # the log, not the table: it is never behind
        con.execute("CREATE TEMP VIEW checkpoints AS " + read_checkpoints_sql(log))
    else:
        con.execute(_CREATE_CHECKPOINTS.replace("CREATE TABLE IF NOT EXISTS", "CREATE TEMP TABLE"))
    for name, sql in VIEWS.items():
        con.execute(f"CREATE TEMP VIEW {name} AS {sql}")
    return con


def _flows_with_tail(con: duckdb.DuckDBPyConnection) -> str:
    """audit.flows with the journal tail folded in: the tail's continuing flows are fetched
    by id, merged, and hidden from audit.flows by rowid, so no query joins every flow."""
    con.execute(f"CREATE TEMP TABLE tail_flows AS {fold_sql('journal_tail')}")
    if not con.execute("SELECT count(*) FROM tail_flows").fetchone()[0]:
        return "SELECT * FROM audit.flows"
    con.execute(f"CREATE TEMP TABLE tail_continuing AS {continuing_sql('journal_tail')}")
    ids = [r[0] for r in con.execute("SELECT flow_id FROM tail_continuing").fetchall()]
    con.execute("CREATE TEMP TABLE tail_base AS SELECT rowid AS base_rowid, * FROM audit.flows WHERE "
                + id_filter("flow_id", ids, "SELECT flow_id FROM tail_continuing"))
    rowids = [r[0] for r in con.execute("SELECT base_rowid FROM tail_base").fetchall()]
    con.execute("CREATE TEMP TABLE tail_merged AS "
                + merge_sql("tail_flows", "(SELECT * EXCLUDE (base_rowid) FROM tail_base)"))
    keep = "" if not rowids else " WHERE NOT " + id_filter("rowid", rowids, "SELECT base_rowid FROM tail_base")
    return f"SELECT * FROM audit.flows{keep} UNION ALL SELECT * FROM tail_merged"


def find_flows(con: duckdb.DuckDBPyConnection, prefix: str, limit: int = 6) -> list[tuple[str, int, int]]:
    """(flow_id, first_seq, last_seq) of the flows whose id is `prefix` or starts with it:
    the exact id first, an index lookup."""
    exact = con.execute("SELECT flow_id, first_seq, last_seq FROM flows WHERE flow_id = ?", [prefix]).fetchall()
    return exact or con.execute("SELECT flow_id, first_seq, last_seq FROM flows WHERE starts_with(flow_id, ?) "
                                "ORDER BY flow_id LIMIT ?", [prefix, limit]).fetchall()


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
