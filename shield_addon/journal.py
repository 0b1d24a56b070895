"""The append-only journal: JSON-lines segments, hash-chained, group-committed with fsync.

The journal, not DuckDB, carries durability: a flow waits only for its line to be on
disk. `append` seals a batch into the chain and writes it with one `write` and one
`fdatasync` (group commit: many flows, one fsync); the audit writer process calls it
(shield_addon/writer/). `submit` queues an event for a thread of the journal's own that
appends whatever is queued, for code without a writer process (tools, tests, benchmarks).
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from shield_addon import record
from shield_addon.segments import SEGMENT_RE, line_seq, segments, tail_files  # noqa: F401 - re-exported

log = logging.getLogger(__name__)

SEGMENT_BYTES = 64 * 1024 * 1024
MAX_BATCH = 1000


class JournalError(OSError):
    """The journal could not make an event durable."""


def read_rows(directory: Path, after_seq: int = 0, on_bad: Callable[[Path, int], None] | None = None,
              containing: bytes | None = None) -> Iterator[dict[str, Any]]:
    """Rows with seq > after_seq, in order. A torn last line (a crash mid-write, or a
    write in progress while we read) is skipped, never half-read. A complete line that
    is not JSON raises ValueError, or goes to on_bad(segment, line number) if given.
    `containing`: only lines with these bytes are parsed (a cheap scan of a big journal)."""
    segs = segments(directory)
    for i, (_first, path) in enumerate(segs):
        if i + 1 < len(segs) and segs[i + 1][0] <= after_seq + 1:
            continue  # every row of this segment is older than what we want
        try:
            with open(path, "rb") as f:
                for n, line in enumerate(f, 1):
                    if not line.endswith(b"\n"):
                        break
                    if containing is not None and containing not in line:
                        continue
                    try:
                        row = json.loads(line)
                        seq = row["seq"]
                    except (ValueError, KeyError, TypeError):
                        if on_bad is None:
                            raise ValueError(f"{path.name} line {n} is not a journal row") from None
                        on_bad(path, n)
                        continue
                    if isinstance(seq, int) and seq > after_seq:
                        yield row
        except FileNotFoundError:
            continue


def journal_line(row: dict[str, Any]) -> bytes:
    """One row as compact JSON. orjson writes the same bytes as json.dumps(ensure_ascii=False,
    separators=(",", ":")) at a tenth of the cost, on the thread that holds the GIL for it."""
    try:
        return orjson.dumps(row)
    except TypeError:  # a value orjson refuses (an int past 64 bits): the standard library takes any
        return json.dumps(row, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


class Journal:
    def __init__(self, directory: str | Path, segment_bytes: int = SEGMENT_BYTES,
                 on_commit: Callable[[int, str], None] | None = None):
        self.dir = Path(directory)
        self.segment_bytes = segment_bytes
        self.on_commit = on_commit  # called from the writer thread after each durable batch
        self.seq = 0
        self.head = record.GENESIS
        self.tip = (0, record.GENESIS)  # (seq, row_hash) as one value: other threads read it
        self.synced = self.tip  # the last (seq, row_hash) known to be on disk
        self.chain_id = ""
        self._fd: int | None = None
        self._size = 0
        self._queue: queue.SimpleQueue[tuple[dict[str, Any], Future] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ lifecycle

    def open(self, thread: bool = True) -> None:
        """Repair a torn tail, resume seq and prev_hash from the last line, start writing
        (thread=False: no writer thread; the caller appends itself)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        segs = segments(self.dir)
        if segs:
            last = self._repair(segs[-1][1])
            if last is None and len(segs) > 1:
                last = self._last_row(segs[-2][1])
            if last:
                self.seq, self.head, self.chain_id = last["seq"], last["row_hash"], last["chain_id"]
                self.tip = self.synced = (self.seq, self.head)
        self.chain_id = self.chain_id or self._chain_id_file()
        self._open_segment(segs[-1][1] if segs else None)
        if thread:
            self._thread = threading.Thread(target=self._run, name="shield-journal", daemon=True)
            self._thread.start()

    def close(self) -> None:
        if self._thread:
            self._queue.put(None)
            self._thread.join()
            self._thread = None
        if self._fd is not None:
            self.sync()
            os.close(self._fd)
            self._fd = None

    def _chain_id_file(self) -> str:
        """The chain's name outlives the journal's first segment, so it is kept beside it."""
        path = self.dir.parent / "chain_id"
        if path.exists():
            return path.read_text().strip()
        chain_id = str(uuid.uuid4())
        tmp = path.with_suffix(".tmp")
        tmp.write_text(chain_id + "\n")
        os.replace(tmp, path)
        return chain_id

    def _repair(self, path: Path) -> dict[str, Any] | None:
        """Cut a torn last line off and return the last complete row."""
        data = path.read_bytes()
        end = data.rfind(b"\n") + 1
        if end != len(data):
            log.warning("journal %s: removing a torn last line of %d bytes", path.name, len(data) - end)
            with open(path, "r+b") as f:
                f.truncate(end)
                os.fsync(f.fileno())
        return self._last_row(path)

    @staticmethod
    def _last_row(path: Path) -> dict[str, Any] | None:
        data = path.read_bytes().rstrip(b"\n")
        if not data:
            return None
        return json.loads(data[data.rfind(b"\n") + 1 :])

    def _open_segment(self, path: Path | None) -> None:
        if self._fd is not None:
            self.sync()  # lines written without sync must not be left behind unsynced
            os.close(self._fd)
        if path is None:
            path = self.dir / f"seg-{self.seq + 1:012d}.jsonl"
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
        self._size = os.fstat(self._fd).st_size
        dfd = os.open(self.dir, os.O_RDONLY)
        try:
            os.fsync(dfd)  # the new name must survive a crash too
        finally:
            os.close(dfd)

    # ------------------------------------------------------------ writing

    def submit(self, event: dict[str, Any]) -> Future:
        """Queue an event; the future resolves to the sealed row once it is on disk,
        or fails with JournalError."""
        fut: Future = Future()
        if self._thread is None:
            fut.set_exception(JournalError("the journal is not open"))
        else:
            self._queue.put((event, fut))
        return fut

    def write(self, event: dict[str, Any], timeout: float = 10) -> dict[str, Any]:
        """Submit and wait: for code that is not async (shutdown, CLI)."""
        return self.submit(event).result(timeout)

    def _run(self) -> None:
        stop = False
        while not stop:
            item = self._queue.get()
            batch = []
            while True:
                if item is None:
                    stop = True
                else:
                    batch.append(item)
                if len(batch) >= MAX_BATCH:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            if batch:
                self._commit(batch)

    def _commit(self, batch: list[tuple[dict[str, Any], Future]]) -> None:
        try:
            rows = self.append([event for event, _ in batch])
        except JournalError as err:
            for _, fut in batch:
                fut.set_exception(err)
            return
        for row, (_, fut) in zip(rows, batch):
            fut.set_result(row)
        self.committed()

    def append(self, events: list[dict[str, Any]], sync: bool = True) -> list[dict[str, Any]]:
        """Seal events into the chain and write them with one `write`; with sync, also
        fdatasync them. All or nothing: on JournalError no line of the batch stays."""
        seq, head = self.seq, self.head
        rows, lines = [], []
        # The writer stamps the time, so ts never goes backwards along seq.
        now = record.utc_text(time.time())
        for event in events:
            seq += 1
            row = record.seal({**event, "ts": now}, seq, self.chain_id, head)
            head = row["row_hash"]
            rows.append(row)
            lines.append(journal_line(row))
        data = b"\n".join(lines) + b"\n"
        try:
            if self._size and self._size + len(data) > self.segment_bytes:
                self._open_segment(self.dir / f"seg-{self.seq + 1:012d}.jsonl")
            self._write_all(data)
            if sync:
                os.fdatasync(self._fd)
        except OSError as e:
            self._undo()
            err = JournalError(e.errno, f"audit journal write failed: {e.strerror or e}")
            log.error("%s", err)
            raise err from e
        self._size += len(data)
        self.seq, self.head = seq, head
        self.tip = (seq, head)
        if sync:
            self.synced = self.tip
        return rows

    def sync(self) -> None:
        """Make every written line durable (after appends with sync=False)."""
        if self.synced != self.tip and self._fd is not None:
            tip = self.tip
            os.fdatasync(self._fd)
            self.synced = tip

    def committed(self) -> None:
        """Tell on_commit (the checkpointer) that the chain is durable up to `synced`."""
        if self.on_commit:
            try:
                self.on_commit(*self.synced)
            except Exception:  # noqa: BLE001 - a checkpoint failure must not stop the journal
                log.exception("journal: after-commit hook failed")

    def _write_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]

    def _undo(self) -> None:
        """A failed batch must leave no partial line: the next good batch continues the chain."""
        try:
            os.ftruncate(self._fd, self._size)
        except OSError:
            log.exception("journal: could not cut a failed write; the next open will repair it")


# ---------------------------------------------------------------- reading for ingest


@dataclass
class Cursor:
    """Where the last ingest stopped in the journal: the next one reads only newer bytes,
    not the whole current segment again (up to 64 MiB of JSON parsed every second)."""
    path: Path | None = None
    offset: int = 0  # just after the line of `seq`
    seq: int = 0


BATCH_BYTES = 32 << 20


def new_lines(jdir: Path, have: int, upto: int, cursor: Cursor, max_bytes: int = BATCH_BYTES) -> bytes:
    """The journal's lines with seq in (have, upto], up to about max_bytes, read from the
    cursor when it is still where `have` ends; the cursor moves past the last line taken.
    Reads line by line, so a batch costs what it takes, not the rest of a 64 MiB segment."""
    out: list[bytes] = []
    size = 0
    for path in tail_files(jdir, have):
        if size >= max_bytes:
            break
        start = cursor.offset if path == cursor.path and cursor.seq == have else 0
        with open(path, "rb") as f:
            f.seek(start)
            pos = start
            while size < max_bytes:
                line = f.readline()
                seq = line_seq(line)
                if seq is not None and seq > upto or not line.endswith(b"\n"):
                    break  # later lines are not committed yet, or the segment ends here
                pos += len(line)
                if seq is not None and seq > have:
                    out.append(line)
                    size += len(line)
                    cursor.path, cursor.offset, cursor.seq = path, pos, seq
    return b"".join(out)
