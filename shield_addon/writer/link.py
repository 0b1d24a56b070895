"""The proxy's end of the audit writer: events out, watermarks in, on the event loop's own socket.

Events queued in one turn of the event loop leave in one `send` and share one future: the
watermark that covers the last of them releases them all. An event nobody waits for (a
response, a decision: its request event is already on disk) lingers until the next event that
is waited for, or LINGER seconds: it rides along instead of waking the writer on its own. The answers arrive on a socket the
loop already watches, so no thread has to wake the loop up. When the writer is gone, every
event waiting for it fails (the flows are refused) and a new writer is started; flows go on
when it is ready.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import subprocess
import sys
import threading
from collections import deque
from pathlib import Path
from typing import Any

import orjson

import shield_addon
from shield_addon.journal import JournalError
from shield_addon.record.text import safe_text
from shield_addon.writer import process, wire

log = logging.getLogger("shield")

STARTUP_WAIT = 60.0  # seconds: opening a journal repairs its tail and may wait for the last writer's lock
CLOSE_WAIT = 30.0
RESTART_FIRST, RESTART_MAX = 0.2, 5.0
LINGER = 0.05  # seconds an event nobody waits for may wait for company
LINGER_BYTES = 256 << 10  # ... unless this much is queued
NOT_OPEN = "the audit journal is not open"
ERRORS = "writer.err"  # in the audit directory: what the writer process printed, if anything


def wire_line(event: dict[str, Any]) -> bytes:
    try:
        return orjson.dumps(event, option=orjson.OPT_APPEND_NEWLINE)
    except TypeError:  # an int past 64 bits, a lone surrogate: escaped, the writer reads them back
        return json.dumps(event, ensure_ascii=True, separators=(",", ":")).encode() + b"\n"


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class Child:
    """The writer: a process (the default) or a thread of the proxy (shield_writer=thread)."""

    def __init__(self, sock: socket.socket, args: list[str], in_thread: bool, errors: Path | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.proc: subprocess.Popen | None = None
        self.thread: threading.Thread | None = None
        if in_thread:
            options = process.parser().parse_args(args)
            options.fleet = (env or {}).get(process.FLEET_ENV, options.fleet)
            self.thread = threading.Thread(target=process.run, args=(sock, options), name="shield-writer", daemon=True)
            self.thread.start()
            return
        # `env`: what must not be on a command line (the fleet URL may hold a password).
        env = {**os.environ, **(env or {})}  # the writer imports this very package, wherever it was loaded from
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(Path(shield_addon.__file__).parents[1]),
                                                        env.get("PYTHONPATH")) if p)
        # Its log lines reach the proxy's log through the socket; the terminal is mitmproxy's
        # console, so whatever else it might print (a traceback, should it ever fail) goes
        # to a file beside the journal.
        err: Any = subprocess.DEVNULL
        if errors:
            try:
                errors.parent.mkdir(parents=True, exist_ok=True)
                err = open(errors, "ab")  # noqa: SIM115 - the child keeps it
            except OSError:
                errors = None  # an audit dir it cannot write: the writer itself will say so, through the socket
        try:
            # -P: `-m` would put the working directory first on the path, and a directory that
            # holds another `shield_addon` (an older checkout) would run its writer instead.
            self.proc = subprocess.Popen([sys.executable, "-P", "-m", "shield_addon.writer", "--fd", str(sock.fileno()),
                                          *args],
                                         pass_fds=(sock.fileno(),), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=err, env=env)
        finally:
            sock.close()
            if errors:
                err.close()

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def wait(self, timeout: float) -> int | None:
        """The exit status (0 for a thread that ended), None if still running after timeout."""
        if self.proc:
            try:
                return self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                return None
        assert self.thread is not None
        self.thread.join(timeout)
        return None if self.thread.is_alive() else 0

    def stop(self) -> None:
        """A writer that will not end by itself (a process only: a thread cannot be killed)."""
        if self.wait(CLOSE_WAIT) is None and self.proc:
            log.error("shield: the audit writer did not exit; killing it")
            self.proc.kill()
            self.proc.wait()


class Group:
    """The events sent in one turn of the loop: the ordinals first..last, one future."""

    __slots__ = ("first", "last", "future", "error")

    def __init__(self, first: int) -> None:
        self.first = self.last = first
        self.future: asyncio.Future | None = None
        self.error: str | None = None


class WriterLink:
    def __init__(self, journal_dir: Path, args: list[str], in_thread: bool = False,
                 env: dict[str, str] | None = None) -> None:
        self.dir = journal_dir
        self.args, self.in_thread, self.env = args, in_thread, env
        self.child: Child | None = None
        self.sock: socket.socket | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.down: str | None = NOT_OPEN  # why events cannot be written now; None while they can
        self.chain_id = ""
        self.sent = 0  # events sent to this writer
        self.last_line = 0  # bytes of the last event queued (what an agent's budget is charged)
        self.out = bytearray()
        self.inbox = bytearray()
        self.group: Group | None = None  # this turn's events, not sent yet
        self.groups: deque[Group] = deque()  # sent, waiting for their watermark
        self.closing = False
        self._writing = False
        self._soon = False  # a flush is due in this turn of the loop
        self._later: asyncio.TimerHandle | None = None  # ... or when the lingering is over
        self._restart: asyncio.Task | None = None

    @property
    def pid(self) -> int | None:
        return self.child.pid if self.child else None

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Start the writer and wait until its journal is open; JournalError if it cannot be."""
        self._install(*self._spawn())

    def _spawn(self) -> tuple[Child, socket.socket, bytes, str]:
        ours, theirs = socket.socketpair()
        child = Child(theirs, self.args, self.in_thread, self.dir.parent / ERRORS, self.env)
        ours.settimeout(STARTUP_WAIT)
        data = b""
        answer = None
        try:
            while answer is None or answer.kind == "L":  # what it logs while it opens the journal, then R or F
                while b"\n" not in data:
                    chunk = ours.recv(4096)
                    if not chunk:
                        raise JournalError(f"the audit writer exited (status {child.wait(5)}) before it was ready")
                    data += chunk
                line, _, data = data.partition(b"\n")
                answer = wire.parse(line)
                if answer.kind == "L":
                    log.log(answer.n, "shield writer: %s", safe_text(answer.text))
        except (OSError, ValueError, JournalError) as e:  # ValueError: it answered something unreadable
            ours.close()
            child.stop()
            raise e if isinstance(e, JournalError) else JournalError(f"the audit writer did not start: {e}") from e
        rest = data
        if answer.kind != "R":
            ours.close()
            child.stop()
            raise JournalError(safe_text(answer.text))
        ours.setblocking(False)
        return child, ours, rest, answer.text

    def _install(self, child: Child, sock: socket.socket, rest: bytes, chain_id: str) -> None:
        self.child, self.sock, self.chain_id = child, sock, chain_id
        self.sent, self.out, self.inbox = 0, bytearray(), bytearray(rest)
        self.loop, self._writing = None, False
        self.down = None
        self.attach()

    def attach(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Read the writer's answers on the running loop (a new loop replaces an old one)."""
        loop = loop or _running_loop()
        if loop is None or loop is self.loop or self.sock is None:
            return
        self._detach()
        self.loop = loop
        loop.add_reader(self.sock.fileno(), self._readable)

    def _detach(self) -> None:
        if self._later is not None:
            self._later.cancel()
        self._soon, self._later = False, None
        if self.loop is not None and self.sock is not None:
            try:
                self.loop.remove_reader(self.sock.fileno())
                self.loop.remove_writer(self.sock.fileno())
            except (RuntimeError, ValueError):
                pass  # that loop is closed
        self.loop, self._writing = None, False

    def close(self) -> None:
        """Send what is queued, let the writer finish (it signs the tail) and wait for it."""
        self.closing = True
        if self._restart:
            self._restart.cancel()
        if self.sock is not None:
            self._detach()
            self._seal_group()
            sock, self.sock = self.sock, None
            try:
                sock.settimeout(CLOSE_WAIT)
                sock.sendall(self.out)
                self.out.clear()
                sock.shutdown(socket.SHUT_WR)
                while data := sock.recv(65536):
                    self._take(data)
            except OSError as e:
                log.error("shield: closing the audit writer: %s", e)
            finally:
                sock.close()
        self._fail_all(NOT_OPEN)
        if self.child:
            self.child.stop()
            self.child = None
        self.down = NOT_OPEN

    # ------------------------------------------------------------ events out

    def submit(self, event: dict[str, Any]) -> None:
        """Send an event; nobody waits for it (a failure is logged)."""
        self._queue(event, False)

    def submit_async(self, event: dict[str, Any]) -> asyncio.Future:
        """Send an event; the future resolves when it is written (on disk, with fsync), or
        fails with JournalError."""
        fut = self._queue(event, True)
        assert fut is not None
        return fut

    def _queue(self, event: dict[str, Any], wait: bool) -> asyncio.Future | None:
        if self.down is not None:
            raise JournalError(self.down)
        line = wire_line(event)
        self.out += line
        self.last_line = len(line)
        self.sent += 1
        loop = _running_loop()
        if loop is None:  # a hook outside the loop (start-up): send now and wait for nothing
            self.groups.append(Group(self.sent))
            self._send_blocking()
            return None
        self.attach(loop)
        group = self.group
        if group is None:
            group = self.group = Group(self.sent)
        group.last = self.sent
        if wait or len(self.out) > LINGER_BYTES:
            if not self._soon:
                self._soon = True
                loop.call_soon(self._flush)
        elif self._later is None and not self._soon:
            self._later = loop.call_later(LINGER, self._flush)
        if wait and group.future is None:
            group.future = loop.create_future()
        return group.future if wait else None

    def _seal_group(self) -> None:
        if self.group is not None:
            self.groups.append(self.group)
            self.group = None

    def _flush(self) -> None:
        self._soon = False
        if self._later is not None:
            self._later.cancel()
            self._later = None
        self._seal_group()
        if self.sock is None or self._writing or not self.out:
            return
        try:
            sent = self.sock.send(self.out)
        except BlockingIOError:
            sent = 0
        except OSError as e:
            self._lost(f"sending to it failed: {e}")
            return
        del self.out[:sent]
        if self.out and self.loop is not None:
            self._writing = True
            self.loop.add_writer(self.sock.fileno(), self._writable)

    def _writable(self) -> None:
        self._writing = False
        assert self.loop is not None and self.sock is not None
        self.loop.remove_writer(self.sock.fileno())
        self._flush()

    def _send_blocking(self) -> None:
        assert self.sock is not None
        try:
            self.sock.settimeout(CLOSE_WAIT)
            self.sock.sendall(self.out)
            self.out.clear()
        except OSError as e:
            self._lost(f"sending to it failed: {e}")
        finally:
            if self.sock is not None:
                self.sock.setblocking(False)

    # ------------------------------------------------------------ answers in

    def _readable(self) -> None:
        assert self.sock is not None
        try:
            data = self.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError as e:
            self._lost(str(e))
            return
        if not data:
            self._lost("it closed the connection")
            return
        self._take(data)

    def _take(self, data: bytes) -> None:
        self.inbox += data
        while (end := self.inbox.find(b"\n")) >= 0:
            try:
                answer = wire.parse(bytes(self.inbox[:end]))
            except ValueError as e:  # it cannot be trusted to count any more: a new one
                self._lost(str(e))
                return
            del self.inbox[: end + 1]
            if answer.kind == "L":
                log.log(answer.n, "shield writer: %s", safe_text(answer.text))
                continue
            if answer.kind == "F":
                log.error("shield: %s: events not recorded", safe_text(answer.text))
            self._release(answer.n, answer.text if answer.kind == "F" else None)

    def _release(self, upto: int, error: str | None) -> None:
        """The writer's watermark: every group that ends at or before it is settled."""
        groups = self.groups
        while groups and groups[0].first <= upto:
            group = groups[0]
            group.error = group.error or error
            if group.last > upto:
                return  # the rest of the group is in the writer's next batch
            groups.popleft()
            _settle(group.future, group.error)

    def _fail_all(self, why: str) -> None:
        self._seal_group()
        while self.groups:
            _settle(self.groups.popleft().future, why)
        self.out.clear()

    def _lost(self, why: str) -> None:
        """The writer is gone: refuse what waits for it, refuse new flows, start another."""
        status = self.child.wait(0) if self.child else None
        self.down = f"the audit writer is gone ({why}; exit status {status}; see {ERRORS}); restarting it"
        log.error("shield: %s", self.down)
        loop = self.loop
        self._detach()
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        self._fail_all(self.down)
        if loop is not None and not self.closing and self._restart is None:
            self._restart = loop.create_task(self._start_again())

    async def _start_again(self) -> None:
        delay = RESTART_FIRST
        loop = asyncio.get_running_loop()
        try:
            while not self.closing:
                await asyncio.sleep(delay)
                old, self.child = self.child, None
                if old:
                    await loop.run_in_executor(None, old.stop)
                try:
                    started = await loop.run_in_executor(None, self._spawn)
                except JournalError as e:
                    log.error("shield: the audit writer could not start again: %s", e)
                    delay = min(delay * 2, RESTART_MAX)
                    continue
                if self.closing:  # closed while it started: let it go at once
                    started[1].close()
                    started[0].stop()
                    return
                self._install(*started)
                log.warning("shield: the audit writer is back; flows go on")
                return
        finally:
            self._restart = None


def _settle(fut: asyncio.Future | None, error: str | None) -> None:
    if fut is None or fut.done():
        return
    try:
        if error is None:
            fut.set_result(None)
        else:
            fut.set_exception(JournalError(error))
    except RuntimeError:
        pass  # its loop is closed: nobody waits any more
