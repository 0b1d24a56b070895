"""The writer: the journal, its checkpoints and the DuckDB ingest, fed events through a socket.

It runs in a process of its own (`python -m shield_addon.writer`), or in a thread of the
proxy (shield_writer=thread, for comparison). One loop reads whatever events have arrived,
appends them as one batch (one write, one fdatasync: a group commit) and answers with the
watermark. While a batch is on its way to disk the next one gathers in the socket, so the
batch grows with the load and the answers stay one per batch.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import logging
import os
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any

import orjson

import shield_addon
from shield_addon import checkpoints, fleet, record, store
from shield_addon.core.model import AuditDir
from shield_addon.journal import Journal, JournalError
from shield_addon.writer import wire

log = logging.getLogger("shield")

FSYNC, WRITE = "fsync", "write"
FLEET_ENV = fleet.ENV  # the fleet's URL reaches the writer in its environment, never in argv
LOCK_NAME = "writer.lock"
LOCK_WAIT = 30.0  # seconds: a writer that just lost its proxy may still be finishing
TICK = 1.0  # seconds between checkpoint timers when nothing arrives
READ_SIZE = 1 << 20


def lock_audit_dir(root: Path, wait: float = LOCK_WAIT) -> int:
    """One writer per audit directory: two would fork the chain. Waits for a previous
    writer that is still finishing; OSError when another one keeps writing."""
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() > deadline:
                os.close(fd)
                raise OSError(f"another shield proxy is writing {root} (it holds {LOCK_NAME})") from None
            time.sleep(0.05)


def event_of(line: bytes) -> dict[str, Any]:
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError:  # an int past 64 bits or an escaped lone surrogate: the standard library reads any
        return json.loads(line)


class Outbox:
    """The socket's sending side, shared by the serving loop and the log handler (the ingest
    thread logs too): one line at a time."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock, self.lock = sock, threading.Lock()

    def send(self, data: bytes) -> None:
        with self.lock:
            self.sock.sendall(data)


class ToProxy(logging.Handler):
    """The writer's log lines, into the proxy's log."""

    def __init__(self, outbox: Outbox) -> None:
        super().__init__(logging.WARNING)
        self.outbox = outbox

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.outbox.send(wire.log_lines(record.levelno, self.format(record)))
        except OSError:
            pass  # the proxy is gone: nobody to tell


class Writer:
    def __init__(self, audit: AuditDir, confdir: Path, durability: str = FSYNC, sync_interval: float = 1.0,
                 checkpoint_events: int = 1000, checkpoint_seconds: float = 60, ingest_interval: float = 1.0,
                 fleet: str = "", identity: Any = None):
        self.durability, self.sync_interval = durability, sync_interval
        self.lock = lock_audit_dir(audit.root)
        try:
            key = checkpoints.load_or_create_key(confdir)
            self.journal = Journal(audit.journal)
            self.journal.open(thread=False)
        except BaseException:
            os.close(self.lock)
            raise
        self.checkpointer = checkpoints.Checkpointer(audit.checkpoints, key, self.journal.chain_id,
                                                     checkpoint_events, checkpoint_seconds)
        self.journal.on_commit = self.checkpointer.on_commit
        # Only what is on disk goes into audit.duckdb: with `write` a power loss may cut the
        # journal's tail, and the store must never hold rows the journal lost.
        self.ingester = store.Ingester(audit.root, lambda: self.journal.synced[0], ingest_interval)
        self.ingester.start()
        self.shipper = None
        if fleet:
            from shield_addon.fleet.ship import Shipper  # psycopg only where a fleet is configured

            self.shipper = Shipper(fleet, audit, self.journal.chain_id, lambda: self.journal.synced[0], identity)
            self.shipper.start()
        self.received = 0
        self.synced_at = self.ticked_at = time.monotonic()

    def serve(self, sock: socket.socket, outbox: Outbox) -> None:
        """Until the proxy closes its end: read, append, answer."""
        buf = bytearray()
        while True:
            sock.settimeout(self.timeout())
            try:
                data = sock.recv(READ_SIZE)
            except TimeoutError:
                data = None
            except OSError:
                return
            if data == b"":
                return  # the proxy is gone or closing; a torn last line was never acknowledged
            if data:
                buf += data
                cut = buf.rfind(b"\n") + 1
                if cut:
                    lines = bytes(buf[:cut]).splitlines()
                    del buf[:cut]
                    answer = self.commit(lines)
                    try:
                        outbox.send(answer)
                    except OSError:
                        return
            self.housekeeping()

    def commit(self, lines: list[bytes]) -> bytes:
        """Append the events of these lines; the answers. A line that is not an event of the
        trail (a bug of the proxy's) is refused alone: it must not take the writer down."""
        answers, batch = [], []
        for line in lines:
            try:
                event = event_of(line)
                record.check_columns(event)
            except (ValueError, KeyError) as e:
                answers.append(self.append(batch))
                batch = []
                self.received += 1
                answers.append(wire.failed(self.received, f"not an event of the trail: {e}"))
                continue
            batch.append(event)
        answers.append(self.append(batch))
        return b"".join(answers)

    def append(self, events: list[dict[str, Any]]) -> bytes:
        if not events:
            return b""
        self.received += len(events)
        try:
            self.journal.append(events, sync=self.durability == FSYNC)
        except JournalError as e:
            return wire.failed(self.received, str(e))
        except Exception as e:  # noqa: BLE001 - a bug of ours on one batch must not take every later flow down
            log.exception("shield: the audit writer could not seal a batch")
            return wire.failed(self.received, f"the audit writer could not seal the batch: {e!r}")
        if self.durability == FSYNC:
            self.synced_at = time.monotonic()
            self.journal.committed()
        return wire.written(self.received)

    def timeout(self) -> float:
        """Wake up in time for the next sync (durability=write) or checkpoint timer."""
        now = time.monotonic()
        due = self.ticked_at + TICK
        if self.journal.synced != self.journal.tip:
            due = min(due, self.synced_at + self.sync_interval)
        return max(0.0, due - now)

    def housekeeping(self) -> None:
        now = time.monotonic()
        if self.journal.synced != self.journal.tip and now - self.synced_at >= self.sync_interval:
            try:
                self.journal.sync()
                self.synced_at = now
                self.journal.committed()
            except OSError as e:  # acknowledged already: say loudly what a power loss would now cost
                log.error("shield: audit journal fsync failed, events since seq %d are not on disk yet: %s",
                          self.journal.synced[0], e)
        if now - self.ticked_at >= TICK:
            self.ticked_at = now
            self.checkpointer.tick(*self.journal.synced)

    def close(self) -> None:
        """The clean end: everything on disk, the tail signed, the store caught up."""
        self.ingester.stop(final=False)
        self.journal.close()
        self.checkpointer.checkpoint(*self.journal.synced)
        self.ingester.once()
        if self.shipper:
            self.shipper.stop()  # the tail and its checkpoint too, if the database is there
        os.close(self.lock)


def run(sock: socket.socket, options: argparse.Namespace, own_process: bool = False) -> int:
    """Open the writer, say ready (or why not), serve until the proxy lets go, close.
    own_process: its log lines go to the proxy through the socket."""
    outbox = Outbox(sock)
    if own_process:
        logging.getLogger().addHandler(ToProxy(outbox))
        logging.getLogger().setLevel(logging.WARNING)
    try:
        writer = Writer(AuditDir(Path(options.audit)), Path(options.confdir), options.durability,
                        options.sync_interval, options.checkpoint_events, options.checkpoint_seconds,
                        options.ingest_interval, options.fleet, identity(options))
    except (OSError, ValueError) as e:
        outbox.send(wire.failed(0, f"cannot open the audit trail in {options.audit} "
                                   f"(signing key in {options.confdir}): {e}"))
        return 1
    try:
        outbox.send(wire.ready(writer.journal.seq, writer.journal.chain_id))
        writer.serve(sock, outbox)
    finally:
        writer.close()
        sock.close()
    return 0


def arguments(audit: Path, confdir: Path, durability: str, sync_interval: float, checkpoint_events: int,
              checkpoint_seconds: float, ingest_interval: float) -> list[str]:
    return ["--audit", str(audit), "--confdir", str(confdir), "--durability", durability,
            "--sync-interval", str(sync_interval), "--checkpoint-events", str(checkpoint_events),
            "--checkpoint-seconds", str(checkpoint_seconds), "--ingest-interval", str(ingest_interval)]


def identity(options: argparse.Namespace) -> Any:
    if not options.fleet:
        return None
    from shield_addon.fleet.ship import Identity

    return Identity(options.fleet_name, socket.gethostname(), options.fleet_listen, shield_addon.__version__)


def fleet_arguments(name: str, listen: str) -> list[str]:
    return ["--fleet-name", name, "--fleet-listen", listen]


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m shield_addon.writer", description=__doc__.split("\n\n")[0])
    ap.add_argument("--fd", type=int, default=-1, help="the socket to the proxy (a process of its own)")
    ap.add_argument("--audit", required=True)
    ap.add_argument("--confdir", required=True)
    ap.add_argument("--durability", choices=[FSYNC, WRITE], default=FSYNC)
    ap.add_argument("--sync-interval", type=float, default=1.0)
    ap.add_argument("--checkpoint-events", type=int, default=1000)
    ap.add_argument("--checkpoint-seconds", type=float, default=60)
    ap.add_argument("--ingest-interval", type=float, default=1.0)
    ap.add_argument("--fleet-name", default=socket.gethostname(), help="this proxy's name in the fleet")
    ap.add_argument("--fleet-listen", default="", help="where this proxy listens, as registered")
    ap.set_defaults(fleet=os.environ.get(FLEET_ENV, ""))
    return ap


def main(argv: list[str] | None = None) -> int:
    options = parser().parse_args(argv)
    # The proxy ends the writer by closing the socket, after its last event: a Ctrl-C or a
    # SIGTERM sent to the whole process group must not stop it before.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    return run(socket.socket(fileno=options.fd), options, own_process=True)
