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
from collections.abc import Callable
from pathlib import Path

import duckdb

from shield_addon import record
from shield_addon.core.model import AuditDir
from shield_addon.journal import BATCH_BYTES, Cursor, line_seq, new_lines, tail_files  # noqa: F401 - re-exported

# The schema's names, here too: the ingest below and older callers use them from this module.
from shield_addon.schema import (  # noqa: F401 - re-exported
    CANONICAL_SQL,
    CHECKPOINT_COLUMNS,
    CREATE_FLOW_HEADS,
    FLOW_FOLDS,
    LITERAL_IN_MAX,
    TIMELINE_COLUMNS,
    TIMELINE_FOLDS,
    VIEWS,
    chain_check_sql,
    chain_rows_sql,
    continuing_sql,
    fold_sql,
    heads_sql,
    id_filter,
    merge_sql,
    read_checkpoints_sql,
    read_journal_sql,
    sql_list,
    sql_str,
)
from shield_addon.schema import CREATE_CHECKPOINTS as _CREATE_CHECKPOINTS
from shield_addon.schema import CREATE_EVENTS as _CREATE_EVENTS
from shield_addon.schema import CREATE_FLOWS as _CREATE_FLOWS
from shield_addon.schema import MERGE as _MERGE

# The reading side (the CLI's session) lives in session.py, which imports no writer code.
from shield_addon.session import (  # noqa: F401 - re-exported
    LOCK_WAIT,
    chain_status,
    connect_reader,
    find_flows,
    is_lock_error,
    rows_as_dicts,
    table_names,
)

log = logging.getLogger(__name__)

LAYOUT = AuditDir(Path())  # file names only; AuditDir(root) gives the paths
DB_NAME, CHECKPOINT_LOG, JOURNAL_DIR = LAYOUT.db.name, LAYOUT.checkpoints.name, LAYOUT.journal.name


def memory_limit(share: float, cap: int) -> str:
    """A DuckDB memory_limit of `share` of this machine's RAM, at most `cap` bytes (DuckDB's
    default is 80 %, too much beside a proxy or for an export on a shared host)."""
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return f"{min(cap, int(ram * share)) >> 20}MB"


# ---------------------------------------------------------------- writing (the proxy)


def set_up(con: duckdb.DuckDBPyConnection) -> None:
    """Tables and views of audit.duckdb; `flows` is built from `events` if the file predates it."""
    con.execute("BEGIN")
    con.execute(_CREATE_EVENTS)
    for name, typ in record.COLUMNS:  # a file written before these columns existed
        if name in record.LATER_COLUMNS:
            con.execute(f"ALTER TABLE events ADD COLUMN IF NOT EXISTS {name} {typ}")
    con.execute(_CREATE_CHECKPOINTS)
    tables = table_names(con)
    if "flows" not in tables:
        con.execute(_CREATE_FLOWS)
        con.execute(f"INSERT INTO flows {fold_sql('events')} ORDER BY ts, flow_id")
    if "flow_heads" not in tables:
        con.execute(CREATE_FLOW_HEADS)
        con.execute(f"INSERT INTO flow_heads {heads_sql('flows')} ORDER BY head")
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
    con.execute(f"INSERT INTO flow_heads {heads_sql('batch_flows')}{new}")
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
