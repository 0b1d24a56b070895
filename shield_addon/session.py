"""The read-only session every reader opens: audit.duckdb attached read-only, the journal's
newest lines beside it, and the views.

Apart from store.py on purpose: store imports the journal writer (asyncio, threading, uuid,
orjson), some 15-20 ms of every `shield` command that only reads. store re-exports these
names, so older callers keep working.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shield_addon import queries, record
from shield_addon.core.model import AuditDir
from shield_addon.duck import duckdb
from shield_addon.schema import (
    CREATE_CHECKPOINTS,
    VIEWS,
    chain_rows_sql,
    continuing_sql,
    fold_sql,
    id_filter,
    merge_sql,
    read_checkpoints_sql,
    read_journal_sql,
    sql_str,
    views_for,
)

LOCK_WAIT = 20.0  # seconds a reader waits for the ingester to let go of the file
# journal.SEGMENT_RE: the reader lists segments without importing the writer
# (tests/unit/test_session.py checks both agree).
SEGMENT_RE = re.compile(r"^seg-(\d{12})\.jsonl$")


def is_lock_error(e: Exception) -> bool:
    text = str(e)
    return "lock" in text.lower() or "different configuration" in text


def table_names(con: duckdb.DuckDBPyConnection, database: str | None = None) -> set[str]:
    """The tables of `database`, or of the connection's own file when None."""
    return {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables() "
                                      "WHERE database_name = coalesce(?, current_database())", [database]).fetchall()}


def tail_files(journal_dir: Path, after_seq: int) -> list[Path]:
    """The segments that may hold rows after `after_seq` (journal.tail_files)."""
    if not journal_dir.is_dir():
        return []
    segs = sorted((int(m.group(1)), journal_dir / p) for p in os.listdir(journal_dir) if (m := SEGMENT_RE.match(p)))
    return [p for i, (first, p) in enumerate(segs) if i + 1 == len(segs) or segs[i + 1][0] > after_seq + 1]


@dataclass
class Session:
    """A reader's connection, and what find_flows needs to know of it: where a flow's row
    is, by precedence (the tail's merged flows hide their older rows in audit.flows)."""

    con: duckdb.DuckDBPyConnection
    flow_sources: tuple[str, ...] = ("flows",)
    views: set[str] = field(default_factory=set)

    def add_views(self, names: Iterable[str]) -> duckdb.DuckDBPyConnection:
        """Create the views `names` need that are not there yet (each costs a few ms to bind)."""
        for name in views_for(list(names)):
            if name not in self.views:
                self.con.execute(f"CREATE TEMP VIEW {name} AS {VIEWS[name]}")
                self.views.add(name)
        return self.con


def open_session(audit_dir: Path, wait: float = LOCK_WAIT, views: Iterable[str] = VIEWS) -> Session:
    """An in-memory session with `events` and `flows` (audit.duckdb + the journal's newer
    lines), `checkpoints` and the given views. The file is attached read-only, so it never
    blocks another reader."""
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
    sources: tuple[str, ...] = ("flows",)
    if "flows" in tables:
        flows_sql, sources = _flows_with_tail(con)
    else:
        flows_sql = fold_sql("events")
    con.execute("CREATE TEMP VIEW flows AS " + flows_sql)
    log = layout.checkpoints
    if log.exists() and log.stat().st_size:  # the log, not the table: it is never behind
        con.execute("CREATE TEMP VIEW checkpoints AS " + read_checkpoints_sql(log))
    else:
        con.execute(CREATE_CHECKPOINTS.replace("CREATE TABLE IF NOT EXISTS", "CREATE TEMP TABLE"))
    session = Session(con, sources)
    session.add_views(views)
    return session


def connect_reader(audit_dir: Path, wait: float = LOCK_WAIT) -> duckdb.DuckDBPyConnection:
    """open_session with every view: a connection for any question."""
    return open_session(audit_dir, wait).con


def _flows_with_tail(con: duckdb.DuckDBPyConnection) -> tuple[str, tuple[str, ...]]:
    """audit.flows with the journal tail folded in: the tail's continuing flows are fetched
    by id, merged, and hidden from audit.flows by rowid, so no query joins every flow.
    Also where to look a flow up by id, newest first: any filter beside `flow_id = ?` (the
    rowids hidden) keeps DuckDB from the PRIMARY KEY index (a 100-200 ms scan at 10 M events)."""
    con.execute(f"CREATE TEMP TABLE tail_flows AS {fold_sql('journal_tail')}")
    if not con.execute("SELECT count(*) FROM tail_flows").fetchone()[0]:
        return "SELECT * FROM audit.flows", ("audit.flows",)
    con.execute(f"CREATE TEMP TABLE tail_continuing AS {continuing_sql('journal_tail')}")
    ids = [r[0] for r in con.execute("SELECT flow_id FROM tail_continuing").fetchall()]
    con.execute("CREATE TEMP TABLE tail_base AS SELECT rowid AS base_rowid, * FROM audit.flows WHERE "
                + id_filter("flow_id", ids, "SELECT flow_id FROM tail_continuing"))
    rowids = [r[0] for r in con.execute("SELECT base_rowid FROM tail_base").fetchall()]
    con.execute("CREATE TEMP TABLE tail_merged AS "
                + merge_sql("tail_flows", "(SELECT * EXCLUDE (base_rowid) FROM tail_base)"))
    keep = "" if not rowids else " WHERE NOT " + id_filter("rowid", rowids, "SELECT base_rowid FROM tail_base")
    return f"SELECT * FROM audit.flows{keep} UNION ALL SELECT * FROM tail_merged", ("tail_merged", "audit.flows")


def find_flows(con: duckdb.DuckDBPyConnection, prefix: str, limit: int = 6,
               sources: Sequence[str] = ("flows",)) -> list[tuple[str, int, int]]:
    """(flow_id, first_seq, last_seq) of the flows whose id is `prefix` or, if none is, of at
    most `limit` whose id starts with it, in id order. `sources`: Session.flow_sources, where
    an id is looked up through the index, the first that has it winning."""
    for source in sources:
        if exact := con.execute(queries.flow_exact_sql(source), [prefix]).fetchall():
            return exact
    low, high = queries.prefix_range(prefix)
    return con.execute(queries.flow_prefix_sql(high is not None),
                       [low, *([high] if high is not None else []), prefix, limit]).fetchall()


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
