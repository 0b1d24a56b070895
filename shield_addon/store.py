"""audit.duckdb: ingest from the journal, and the read-only session every reader opens.

DuckDB lets one process write a file and nobody read it meanwhile,
so the proxy never keeps it open: the ingester opens it, appends the journal's new
lines in one statement, and closes it. Readers attach it read-only between batches
and add the journal's newest lines themselves, so they always see the live tail.
The tables' and views' SQL is in schema.py; the questions readers ask, in queries.py.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import duckdb

from shield_addon import queries, record
from shield_addon.core.model import AuditDir
from shield_addon.journal import BATCH_BYTES, Cursor, line_seq, new_lines, tail_files  # noqa: F401 - re-exported

# The schema's names, here too: the ingest below and older callers use them from this module.
from shield_addon.schema import (  # noqa: F401 - re-exported
    CANONICAL_SQL,
    CHECKPOINT_COLUMNS,
    FLOW_FOLDS,
    LITERAL_IN_MAX,
    TIMELINE_COLUMNS,
    TIMELINE_FOLDS,
    VIEWS,
    chain_check_sql,
    chain_rows_sql,
    continuing_sql,
    fold_sql,
    id_filter,
    merge_sql,
    read_checkpoints_sql,
    sql_list,
    sql_str,
)
from shield_addon.schema import CREATE_CHECKPOINTS as _CREATE_CHECKPOINTS
from shield_addon.schema import CREATE_EVENTS as _CREATE_EVENTS
from shield_addon.schema import CREATE_FLOWS as _CREATE_FLOWS
from shield_addon.schema import MERGE as _MERGE

log = logging.getLogger(__name__)

LAYOUT = AuditDir(Path())  # file names only; AuditDir(root) gives the paths
DB_NAME, CHECKPOINT_LOG, JOURNAL_DIR = LAYOUT.db.name, LAYOUT.checkpoints.name, LAYOUT.journal.name
LOCK_WAIT = 20.0  # seconds a reader waits for the ingester to let go of the file

# read_json must read JSON-typed columns as text: as JSON it would re-quote them and
# the stored text would no longer be what was hashed.
_READ_COLUMNS = "{" + ", ".join(
    f"'{n}': '{'VARCHAR' if t == 'JSON' else t}'" for n, t in record.COLUMNS
) + "}"
_SELECT_COLUMNS = ", ".join(f"{n}::JSON AS {n}" if t == "JSON" else n for n, t in record.COLUMNS)


def chain_status(con: duckdb.DuckDBPyConnection, seqs: list[int]) -> dict[int, tuple[bool, bool]]:
    """(hash_ok, link_ok) of the given events: each hash recomputed in SQL, each prev_hash
    compared with the row before it."""
    want = sorted(set(seqs) | {s - 1 for s in seqs if s > 1})
    if not want:
        return {}
    rows = con.execute(chain_rows_sql(want), [want[0], want[-1]]).fetchall()
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


def read_journal_sql(files: Sequence[Path]) -> str:
    """A SELECT of journal rows with the events table's types (bind seq bounds as ?, ?)."""
    file_list = "[" + ", ".join(sql_str(str(f)) for f in files) + "]"
    return (
        f"SELECT {_SELECT_COLUMNS} FROM read_json({file_list}, format='newline_delimited', "
        f"columns={_READ_COLUMNS}, ignore_errors=true) WHERE seq > ? AND seq <= ?"
    )


def is_lock_error(e: Exception) -> bool:
    text = str(e)
    return "lock" in text.lower() or "different configuration" in text


# ---------------------------------------------------------------- writing (the proxy)


def table_names(con: duckdb.DuckDBPyConnection, database: str | None = None) -> set[str]:
    """The tables of `database`, or of the connection's own file when None."""
    return {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables() "
                                      "WHERE database_name = coalesce(?, current_database())", [database]).fetchall()}


def set_up(con: duckdb.DuckDBPyConnection) -> None:
    """Tables and views of audit.duckdb; `flows` is built from `events` if the file predates it."""
    con.execute("BEGIN")
    con.execute(_CREATE_EVENTS)
    for name, typ in record.COLUMNS:  # a file written before these columns existed
        if name in record.LATER_COLUMNS:
            con.execute(f"ALTER TABLE events ADD COLUMN IF NOT EXISTS {name} {typ}")
    con.execute(_CREATE_CHECKPOINTS)
    if "flows" not in table_names(con):
        con.execute(_CREATE_FLOWS)
        con.execute(f"INSERT INTO flows {fold_sql('events')} ORDER BY ts, flow_id")
    for name, sql in VIEWS.items():
        con.execute(f"CREATE OR REPLACE VIEW {name} AS {sql}")
    con.execute("COMMIT")


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
    layout = AuditDir(audit_dir)
    con = duckdb.connect(":memory:")
    db = layout.db
    have = 0
    tables: set[str] = set()
    if db.exists():
        _attach(con, db, wait)
        tables = table_names(con, "audit")
        if "events" in tables:
            have = con.execute("SELECT coalesce(max(seq), 0) FROM audit.events").fetchone()[0]
    files = tail_files(layout.journal, have)
    if files:
        con.execute("CREATE TEMP TABLE journal_tail AS " + read_journal_sql(files), [have, 2**62])
    else:
        con.execute("CREATE TEMP TABLE journal_tail (" + ", ".join(f"{n} {t}" for n, t in record.COLUMNS) + ")")
    older = ["SELECT * FROM audit.events"] if "events" in tables else []
    # BY NAME: a file written before the LATER_COLUMNS existed reads them as NULL.
    con.execute("CREATE TEMP VIEW events AS " + " UNION ALL BY NAME ".join([*older, "SELECT * FROM journal_tail"]))
    con.execute("CREATE TEMP VIEW flows AS " + (
        _flows_with_tail(con) if "flows" in tables else fold_sql("events")))
    log = layout.checkpoints
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
    exact = con.execute(queries.FLOW_EXACT, [prefix]).fetchall()
    return exact or con.execute(queries.FLOW_PREFIX, [prefix, limit]).fetchall()


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
