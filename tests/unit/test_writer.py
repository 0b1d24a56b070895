"""The audit writer, in its own process and in a thread: watermarks, group futures, durability
modes, a writer killed mid-load, one writer per audit directory. Real processes, real files."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from pathlib import Path

import pytest

from shield_addon import checkpoints, record, verify
from shield_addon.core.model import AuditDir
from shield_addon.journal import JournalError, read_rows
from shield_addon.writer import process, wire
from shield_addon.writer.link import WriterLink


def link_for(tmp_path: Path, in_thread: bool = False, durability: str = process.FSYNC, sync_interval: float = 1.0) -> WriterLink:
    audit = AuditDir(tmp_path / "audit")
    args = process.arguments(audit.root, tmp_path / "conf", durability, sync_interval, 1000, 60, 1)
    link = WriterLink(audit.journal, args, in_thread=in_thread)
    link.start()
    return link


def rows(tmp_path: Path) -> list[dict]:
    return list(read_rows(tmp_path / "audit" / "journal"))


async def until(pred, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


def test_answers_read_back() -> None:
    assert wire.parse(wire.ready(42, "c-1").rstrip(b"\n")) == ("R", 42, "c-1")
    assert wire.parse(wire.written(7).rstrip(b"\n")) == ("A", 7, "")
    assert wire.parse(wire.failed(3, "disk\nfull").rstrip(b"\n")) == ("F", 3, "disk full")  # one line, always
    for bad in (b"", b"A", b"A x", b"Z 1", b"\x1b[31m 1"):
        with pytest.raises(ValueError):
            wire.parse(bad)


@pytest.mark.parametrize("in_thread", [False, True], ids=["process", "thread"])
async def test_events_of_one_turn_share_one_future_and_are_on_disk_when_it_resolves(tmp_path: Path, in_thread: bool) -> None:
    link = link_for(tmp_path, in_thread)
    try:
        assert (link.pid is None) == in_thread
        futures = [link.submit_async({"stage": "request", "flow_id": f"f{i}", "path": f"/{i}"}) for i in range(50)]
        assert len({id(f) for f in futures}) == 1  # one turn of the loop: one watermark to wait for
        await asyncio.wait_for(futures[0], 10)
        assert [r["flow_id"] for r in rows(tmp_path)] == [f"f{i}" for i in range(50)]
        later = link.submit_async({"stage": "request", "flow_id": "g"})
        assert later is not futures[0]
        await asyncio.wait_for(later, 10)
        assert rows(tmp_path)[-1]["flow_id"] == "g"
    finally:
        link.close()
    report = verify.verify(tmp_path / "audit", checkpoints.load_or_create_key(tmp_path / "conf").public_key())
    assert report.ok, report.problems
    assert report.events == report.signed_seq == 51  # the clean end signed the tail; audit.duckdb agrees


async def test_an_event_nobody_waits_for_rides_along_or_leaves_after_the_linger(tmp_path: Path) -> None:
    link = link_for(tmp_path)
    try:
        link.submit({"stage": "response", "flow_id": "r1"})
        await asyncio.sleep(0)
        assert link.out, "sent on its own, waking the writer for nothing"
        await asyncio.wait_for(link.submit_async({"stage": "request", "flow_id": "q1"}), 10)
        assert [r["flow_id"] for r in rows(tmp_path)] == ["r1", "q1"]  # in the order they were made
        link.submit({"stage": "response", "flow_id": "r2"})
        await until(lambda: len(rows(tmp_path)) == 3, timeout=5)  # alone, it leaves after the linger
    finally:
        link.close()


async def test_a_value_orjson_refuses_still_reaches_the_journal(tmp_path: Path) -> None:
    link = link_for(tmp_path)
    try:
        await asyncio.wait_for(link.submit_async({"stage": "request", "flow_id": "odd", "path": "/caf\udce9"}), 10)
    finally:
        link.close()
    [row] = rows(tmp_path)
    # What sealing in the proxy's own process stores: the undecodable character as U+FFFD.
    assert row["path"] == record.seal({"path": "/caf\udce9"}, 1, "c", record.GENESIS)["path"] == "/caf\ufffd\ufffd\ufffd"


async def test_an_event_that_is_not_one_is_refused_alone(tmp_path: Path) -> None:
    link = link_for(tmp_path)
    try:
        good = link.submit_async({"stage": "request", "flow_id": "a"})
        link._flush()  # its own batch
        bad = link.submit_async({"stage": "request", "flow_id": "b", "no_such_column": 1})
        link._flush()
        after = link.submit_async({"stage": "request", "flow_id": "c"})
        await asyncio.wait_for(good, 10)
        with pytest.raises(JournalError, match="no_such_column"):
            await asyncio.wait_for(bad, 10)
        await asyncio.wait_for(after, 10)
        assert link.down is None
    finally:
        link.close()
    assert [r["flow_id"] for r in rows(tmp_path)] == ["a", "c"]


def test_an_event_sent_outside_the_loop_is_written(tmp_path: Path) -> None:
    link = link_for(tmp_path)
    link.submit({"stage": "ruleset", "path": "rules.yaml"})  # a configure hook: no running loop
    link.close()
    assert [r["stage"] for r in rows(tmp_path)] == ["ruleset"]


def test_the_writer_runs_this_package_whatever_the_working_directory_holds(tmp_path: Path, monkeypatch) -> None:
    """A proxy started in a directory that holds another `shield_addon` (an older checkout)
    must not run that one's writer: `-m` puts the working directory first on the path."""
    other = tmp_path / "elsewhere" / "shield_addon" / "writer"
    other.mkdir(parents=True)
    (other.parent / "__init__.py").write_text("")
    (other / "__init__.py").write_text("")
    (other / "__main__.py").write_text("raise SystemExit(3)\n")
    monkeypatch.chdir(tmp_path / "elsewhere")
    link = link_for(tmp_path)
    link.submit({"stage": "ruleset", "path": "rules.yaml"})
    link.close()
    assert [r["stage"] for r in rows(tmp_path)] == ["ruleset"]


async def test_write_mode_answers_before_fsync_and_syncs_within_the_interval(tmp_path: Path) -> None:
    link = link_for(tmp_path, durability=process.WRITE, sync_interval=0.3)
    cps = AuditDir(tmp_path / "audit").checkpoints
    try:
        await asyncio.wait_for(link.submit_async({"stage": "request", "flow_id": "w1"}), 10)
        assert [r["flow_id"] for r in rows(tmp_path)] == ["w1"]  # written to the OS when answered
        # A checkpoint signs only what is on disk: it appears once the interval's fsync ran.
        await until(lambda: (checkpoints.last_checkpoint(cps) or {}).get("seq") == 1)
    finally:
        link.close()


async def test_a_killed_writer_fails_what_waits_refuses_new_events_and_comes_back(tmp_path: Path) -> None:
    link = link_for(tmp_path)
    try:
        await asyncio.wait_for(link.submit_async({"stage": "request", "flow_id": "before"}), 10)
        first = link.pid
        os.kill(first, signal.SIGKILL)
        waiting = link.submit_async({"stage": "request", "flow_id": "lost"})
        with pytest.raises(JournalError):
            await asyncio.wait_for(waiting, 10)
        with pytest.raises(JournalError, match="audit writer is gone"):
            link.submit_async({"stage": "request", "flow_id": "refused"})
        await until(lambda: link.down is None)
        assert link.pid != first
        await asyncio.wait_for(link.submit_async({"stage": "request", "flow_id": "after"}), 10)
    finally:
        link.close()
    found = [r["flow_id"] for r in rows(tmp_path)]
    assert found[0] == "before" and found[-1] == "after" and "refused" not in found
    assert [r["seq"] for r in rows(tmp_path)] == list(range(1, len(found) + 1))  # one chain, no gap


def test_one_writer_per_audit_directory(tmp_path: Path) -> None:
    link = link_for(tmp_path)
    try:
        with pytest.raises(OSError, match="another shield proxy is writing"):
            process.lock_audit_dir(tmp_path / "audit", wait=0.2)
    finally:
        link.close()
    os.close(process.lock_audit_dir(tmp_path / "audit", wait=0.2))  # free once it closed


def test_a_writer_that_cannot_open_the_journal_says_why(tmp_path: Path) -> None:
    (tmp_path / "audit").mkdir()
    (tmp_path / "audit" / "journal").write_text("not a directory")
    with pytest.raises(JournalError, match="cannot open the audit trail"):
        link_for(tmp_path)


def test_what_the_writer_logs_reaches_the_proxys_log_not_the_terminal(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                                      capfd: pytest.CaptureFixture[str]) -> None:
    """mitmproxy's console owns the terminal: the writer's lines travel through the socket."""
    link = link_for(tmp_path)
    link.submit({"stage": "ruleset", "path": "rules.yaml"})
    link.close()
    [seg] = (tmp_path / "audit" / "journal").iterdir()
    with open(seg, "ab") as f:
        f.write(b'{"seq":2,"torn')  # a crash mid-write: the next writer cuts it and says so
    with caplog.at_level(logging.WARNING, logger="shield"):
        link_for(tmp_path).close()
    assert any("shield writer: journal seg-" in r.getMessage() and "torn last line" in r.getMessage() for r in caplog.records)
    out, err = capfd.readouterr()
    assert "torn" not in out + err
