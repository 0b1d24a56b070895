"""Shipping: a thread of the audit writer that copies the journal into the fleet database.

In order and exactly once: each batch is one transaction that locks the proxy's row, skips
what the database already has (its `shipped_seq`, the high-water mark), COPYs the rest and
moves the mark. A re-sent batch is a no-op; the primary key (chain_id, seq) would refuse a
duplicate anyway. Only rows on disk are shipped (the `committed` watermark), so the fleet
never holds a row the journal could lose. While the database is away the journal keeps
everything and the thread retries; shipping resumes from the database's mark.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson
import psycopg

from shield_addon.core.model import AuditDir
from shield_addon.fleet import db, schema
from shield_addon.journal import Cursor, new_lines
from shield_addon.segments import line_seq

log = logging.getLogger("shield")

INTERVAL = 0.2  # seconds between rounds when there is nothing to ship
HEARTBEAT = 1.0  # seconds between heartbeats
RETRY_MAX = 5.0  # seconds: the longest wait between two attempts to reach the database
# A batch is one transaction. 1-32 MiB ship at the same rate within the development machine's
# noise (scripts/bench_fleet.py; docs/performance.md); smaller batches cost the writer a little
# less CPU and memory (2 MiB: ~1,400 parsed rows at a time) and hold the proxy's row briefly.
BATCH_BYTES = 2 << 20
_COPY = "COPY chain_rows ({}) FROM STDIN".format(", ".join(schema.SHIP_COLUMNS))
_TYPES = [typ for _, typ in schema.TYPED] + ["text"]  # told once per COPY, not found per value


@dataclass(frozen=True)
class Identity:
    """What a proxy registers under."""

    name: str
    host: str
    listen: str
    version: str
    started: float = field(default_factory=time.time)


class Diverged(RuntimeError):
    """The database holds rows this journal does not continue: shipping them would fork the chain."""


class Shipper:
    def __init__(self, url: str, audit: AuditDir, chain_id: str, committed: Callable[[], int], identity: Identity,
                 interval: float = INTERVAL) -> None:
        self.url, self.audit, self.chain_id, self.committed = url, audit, chain_id, committed
        self.identity, self.interval = identity, interval
        self.con: psycopg.Connection | None = None
        self.shipped = -1  # the database's mark, once known
        self.head = ""  # row_hash at the mark
        self.cursor = Cursor()
        self.checkpoint_offset = 0
        self.beat_at = 0.0
        self.error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="shield-ship", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, final_wait: float = 5.0) -> None:
        """Stop the thread, then try to ship what is left for up to `final_wait` seconds."""
        self._stop.set()
        self._thread.join(timeout=30)
        deadline = time.monotonic() + final_wait
        while time.monotonic() < deadline:
            if self.attempt() and self.shipped >= self.committed():
                break
            time.sleep(0.2)
        if self.con is not None:
            self.con.close()

    def _run(self) -> None:
        wait = 0.0
        while not self._stop.wait(wait):
            wait = self.interval if self.attempt() else min(RETRY_MAX, max(self.interval, wait * 2))

    def attempt(self) -> bool:
        """One round: connect if needed, ship a batch, beat. False when the database failed us."""
        try:
            if self.con is None:
                self.connect()
            while self.ship_batch():
                if self._stop.is_set():
                    break
            self.ship_checkpoints()
            self.heartbeat()
        except Diverged as e:
            if self.con is not None:
                report_error(self.con, self.chain_id, str(e))
            self.fail(e)
            return False
        except (psycopg.Error, db.FleetError, OSError) as e:
            self.fail(e)
            return False
        if self.error is not None:
            log.warning("shield: fleet database back; shipping resumed at seq %d", self.shipped)
            self.error = None
        return True

    def fail(self, e: BaseException) -> None:
        text = db.first_line(e)
        if text != self.error:
            log.warning("shield: cannot ship the journal to the fleet (the journal keeps every event): %s", text)
        self.error = text
        if self.con is not None:
            try:
                self.con.close()
            except psycopg.Error:
                pass
            self.con = None

    def connect(self) -> None:
        """Reach the database, bring its schema up to date, learn its mark for this chain and
        check this journal continues it; only then register (a journal that does not
        continue the chain must not take over its row)."""
        con = db.connect(self.url)
        try:
            db.migrate(con)
            shipped, head = self.mark(con)
            self.check_continues(shipped, head)
            i = self.identity
            db.register(con, self.chain_id, i.name, i.host, i.listen, i.version, i.started)
            con.execute("UPDATE proxies SET ship_error = NULL WHERE chain_id = %s", (self.chain_id,))
        except Diverged as e:
            report_error(con, self.chain_id, str(e))
            con.close()
            raise
        except BaseException:
            con.close()
            raise
        self.shipped, self.head = shipped, head
        self.con = con

    def mark(self, con: psycopg.Connection) -> tuple[int, str]:
        """The database's high-water mark for this chain and the row_hash there (0, "" if none)."""
        row = con.execute("SELECT p.shipped_seq, r.row_hash FROM proxies p LEFT JOIN chain_rows r "
                          "ON r.chain_id = p.chain_id AND r.seq = p.shipped_seq WHERE p.chain_id = %s",
                          (self.chain_id,)).fetchone()
        return (row[0], row[1] or "") if row else (0, "")

    def check_continues(self, shipped: int, head: str) -> None:
        """The journal's row at the database's mark must be the one the database holds there:
        a journal that is shorter, or has another row there, would fork the chain. Leaves the
        cursor just past the mark, where shipping resumes."""
        self.cursor = Cursor()
        if shipped == 0:
            return
        upto = self.committed()
        line = new_lines(self.audit.journal, shipped - 1, shipped, self.cursor, 1) if upto >= shipped else b""
        if not line:
            raise Diverged(f"this journal does not continue the fleet's copy of chain {self.chain_id}: the fleet "
                           f"holds seq {shipped}, this journal ends at seq {upto}")
        if head and orjson.loads(line)["row_hash"] != head:
            raise Diverged(f"this journal does not continue the fleet's copy of chain {self.chain_id}: its row "
                           f"at seq {shipped} is not the one the fleet holds")

    def ship_batch(self) -> bool:
        """Ship the next batch of committed rows; True if there may be more."""
        upto = self.committed()
        if upto <= self.shipped:
            if upto < self.shipped:
                raise Diverged(f"this journal does not continue the fleet's copy of chain {self.chain_id}: the "
                               f"fleet holds seq {self.shipped}, this journal ends at seq {upto}")
            return False
        data = new_lines(self.audit.journal, self.shipped, upto, self.cursor, BATCH_BYTES)
        lines = data.splitlines()
        if not lines:
            return False
        assert self.con is not None
        with self.con.transaction():
            mark = self.con.execute("SELECT shipped_seq FROM proxies WHERE chain_id = %s FOR UPDATE",
                                    (self.chain_id,)).fetchone()
            have = mark[0] if mark else 0
            if have != self.shipped:  # another writer of this chain moved the mark: skip what it shipped
                lines = [line for line in lines if (line_seq(line) or 0) > have]
            rows = [(line, orjson.loads(line)) for line in lines]
            if not rows:
                self.shipped = have
                return True
            first = rows[0][1]
            if first["seq"] != have + 1 or (have and self.head and first["prev_hash"] != self.head):
                raise Diverged(f"this journal does not continue the fleet's copy of chain {self.chain_id}: "
                               f"its seq {first['seq']} does not follow the fleet's seq {have}")
            with self.con.cursor().copy(_COPY) as copy:  # type: ignore[arg-type] - our own constant SQL
                copy.set_types(_TYPES)
                for line, row in rows:
                    copy.write_row(chain_row(row, line.decode()))
            last = rows[-1][1]
            self.con.execute("UPDATE proxies SET shipped_seq = %s, journal_seq = greatest(journal_seq, %s), "
                             "last_seen = now(), ship_error = NULL WHERE chain_id = %s",
                             (last["seq"], upto, self.chain_id))
        self.shipped, self.head = last["seq"], last["row_hash"]
        return True

    def ship_checkpoints(self) -> None:
        """The signed checkpoints, beside the events they sign (never ahead of them)."""
        path = self.audit.checkpoints
        try:
            with open(path, "rb") as f:
                f.seek(self.checkpoint_offset)
                data = f.read()
        except FileNotFoundError:
            return
        taken, lines = 0, []
        for line in data.splitlines(keepends=True):
            if not line.endswith(b"\n"):
                break
            try:
                seq = orjson.loads(line).get("seq")
            except (orjson.JSONDecodeError, AttributeError):
                seq = None  # not a checkpoint: kept as it is, verify says so
            if isinstance(seq, int) and seq > self.shipped:
                break
            lines.append((seq if isinstance(seq, int) else -1, line.rstrip(b"\n").decode("utf-8", "replace")))
            taken += len(line)
        if lines:
            assert self.con is not None
            with self.con.transaction(), self.con.cursor() as cur:
                cur.executemany("INSERT INTO checkpoints (chain_id, seq, line) VALUES (%s, %s, %s) "
                                "ON CONFLICT DO NOTHING", [(self.chain_id, s, text) for s, text in lines])
        self.checkpoint_offset += taken

    def heartbeat(self) -> None:
        now = time.monotonic()
        if now - self.beat_at < HEARTBEAT:
            return
        assert self.con is not None
        self.con.execute("UPDATE proxies SET last_seen = now(), journal_seq = greatest(journal_seq, %s) "
                         "WHERE chain_id = %s", (self.committed(), self.chain_id))
        self.beat_at = now


def chain_row(row: dict, line: str) -> tuple:
    """schema.pg_row, without its per-value NUL scrubbing when the line holds no NUL at all
    (JSON escapes every NUL as \\u0000): a third of the shipping thread's time otherwise."""
    if "\\u0000" in line:
        return schema.pg_row(row, line)
    return (*map(row.get, schema.TYPED_NAMES), line)


def report_error(con: psycopg.Connection, chain_id: str, text: str) -> None:
    """Say in the proxy's row why its journal is not shipped, for whoever watches the fleet."""
    try:
        con.execute("UPDATE proxies SET ship_error = %s, last_seen = now() WHERE chain_id = %s", (text, chain_id))
    except psycopg.Error:
        pass  # the database went away as well: the proxy's log says it
