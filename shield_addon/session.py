"""The read-only session every reader opens: audit.duckdb attached read-only, the journal's
newest lines beside it, and the views.

Apart from store.py on purpose: store imports the journal writer (asyncio, threading, uuid,
orjson), some 15-20 ms of every `shield` command that only reads. store re-exports these
names, so older callers keep working.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shield_addon import queries, record
from shield_addon.core.model import AuditDir
from shield_addon.duck import duckdb
from shield_addon.schema import (
    CREATE_CHECKPOINTS,
    HEAD_CHARS,
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
from shield_addon.segments import offset_after, tail_files

LOCK_WAIT = 20.0  # seconds a reader waits for the ingester to let go of the file


def is_lock_error(e: Exception) -> bool:
    text = str(e)
    return "lock" in text.lower() or "different configuration" in text


def table_names(con: duckdb.DuckDBPyConnection, database: str | None = None) -> set[str]:
    """The tables of `database`, or of the connection's own file when None."""
    return {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables() "
                                      "WHERE database_name = coalesce(?, current_database())", [database]).fetchall()}


@dataclass
class Session:
    """A reader's connection. What a question needs is made when it is first asked: the
    views (a few ms each to bind) and, with an unfolded journal tail, `flows` with the tail
    folded in (tens of ms); `show` needs neither."""

    con: duckdb.DuckDBPyConnection
    file_flows: bool  # audit.duckdb has a `flows` table
    views: set[str] = field(default_factory=set)
    file_heads: bool = False  # ... and `flow_heads`

    def add_views(self, names: Iterable[str]) -> duckdb.DuckDBPyConnection:
        """Create `flows` and the views `names` need that are not there yet."""
        names = list(names)
        wanted = views_for([n for n in names if n != "flows"])
        if ("flows" in names or FLOWS_VIEWS & set(wanted)) and "flows" not in self.views:
            self.con.execute("CREATE TEMP VIEW flows AS " + (
                _flows_with_tail(self.con) if self.file_flows else fold_sql("events")))
            self.views.add("flows")
        for name in wanted:
            if name not in self.views:
                self.con.execute(f"CREATE TEMP VIEW {name} AS {VIEWS[name]}")
                self.views.add(name)
        return self.con

    def find_flows(self, prefix: str, limit: int = 6) -> list[tuple[str, int, int]]:
        """find_flows without folding the tail into `flows`: ids are looked up in audit.flows
        by equality alone (its PRIMARY KEY index) and in the journal tail."""
        if not self.file_flows:
            self.add_views(["flows"])
            return find_flows(self.con, prefix, limit)
        if exact := self._flow(prefix):
            return [exact]
        if self.file_heads and len(prefix) >= HEAD_CHARS:
            ids = {i for (i,) in self.con.execute(queries.FLOW_HEADS, [prefix[:HEAD_CHARS]]).fetchall() if i.startswith(prefix)}
            ids.update(i for (i,) in self.con.execute(queries.TAIL_IDS_BY_PREFIX, [prefix]).fetchall())
            return [f for flow_id in sorted(ids)[:limit] if (f := self._flow(flow_id))]
        low, high = queries.prefix_range(prefix)
        bounds = [low, *([high] if high is not None else []), prefix]
        ids = self.con.execute(queries.flow_ids_by_prefix_sql(("audit.flows", "journal_tail"), high is not None),
                               [*bounds, *bounds, limit]).fetchall()
        return [f for (flow_id,) in ids if (f := self._flow(flow_id))]

    def _flow(self, flow_id: str) -> tuple[str, int, int] | None:
        """(flow_id, first_seq, last_seq) over audit.flows and the journal tail."""
        found = [*self.con.execute(queries.flow_exact_sql("audit.flows"), [flow_id]).fetchall(),
                 *self.con.execute(queries.FLOW_IN_TAIL, [flow_id]).fetchall()]
        if not found:
            return None
        return flow_id, min(f[1] for f in found), max(f[2] for f in found)


# The views that read `flows` (directly or through timeline).
FLOWS_VIEWS = {"timeline", "by_agent", "denials"}


def open_session(audit_dir: Path, wait: float = LOCK_WAIT, views: Iterable[str] = (*VIEWS, "flows")) -> Session:
    """An in-memory session with `events` (audit.duckdb + the journal's newer lines),
    `checkpoints` and the given views (and `flows`). The file is attached read-only, so
    it never blocks another reader."""
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
        with tail_of(files, have) as paths:
            con.execute("CREATE TEMP TABLE journal_tail AS " + read_journal_sql(paths), [have, 2**62])
    else:
        con.execute("CREATE TEMP TABLE journal_tail (" + ", ".join(f"{n} {t}" for n, t in record.COLUMNS) + ")")
    older = ["SELECT * FROM audit.events"] if "events" in tables else []
    # BY NAME: a file written before the LATER_COLUMNS existed reads them as NULL.
    con.execute("CREATE TEMP VIEW events AS " + " UNION ALL BY NAME ".join([*older, "SELECT * FROM journal_tail"]))
    log = layout.checkpoints
    if log.exists() and log.stat().st_size:  # the log, not the table: it is never behind
        con.execute("CREATE TEMP VIEW checkpoints AS " + read_checkpoints_sql(log))
    else:
        con.execute(CREATE_CHECKPOINTS.replace("CREATE TABLE IF NOT EXISTS", "CREATE TEMP TABLE"))
    session = Session(con, "flows" in tables, file_heads="flow_heads" in tables)
    session.add_views(views)
    return session


@contextlib.contextmanager
def tail_of(files: list[Path], have: int) -> Iterator[list[Path]]:
    """The journal files to read for the rows after `have`: the first from where they
    start (copied to a temporary file: read_json reads whole files), the others whole."""
    start = offset_after(files[0], have)
    if not start:
        yield files
        return
    with open(files[0], "rb") as src, tempfile.NamedTemporaryFile(suffix=".jsonl") as part:
        src.seek(start)
        shutil.copyfileobj(src, part)
        part.flush()
        yield [Path(part.name), *files[1:]]


def connect_reader(audit_dir: Path, wait: float = LOCK_WAIT) -> duckdb.DuckDBPyConnection:
    """open_session with every view: a connection for any question."""
    return open_session(audit_dir, wait).con


def _flows_with_tail(con: duckdb.DuckDBPyConnection) -> str:
    """audit.flows with the journal tail folded in: the tail's continuing flows are fetched
    by id, merged, and hidden from audit.flows by rowid, so no query joins every flow.
    (That rowid filter also keeps DuckDB from the PRIMARY KEY index for `flow_id = ?` on
    this view: Session.find_flows looks ids up in audit.flows itself.)"""
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
    """(flow_id, first_seq, last_seq) of the flow whose id is `prefix` or, if none is, of at
    most `limit` flows whose id starts with it, in id order; over the `flows` view."""
    if exact := con.execute(queries.flow_exact_sql(), [prefix]).fetchall():
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
