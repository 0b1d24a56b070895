from __future__ import annotations

import concurrent.futures
import json
import os
from pathlib import Path

import pytest

from shield_addon import record, store
from shield_addon.journal import Journal, JournalError, read_rows, segments


def opened(tmp_path: Path, **kw) -> Journal:
    j = Journal(tmp_path / "journal", **kw)
    j.open()
    return j


def test_events_get_gapless_seq_and_a_chain_from_genesis(tmp_path: Path) -> None:
    j = opened(tmp_path)
    futs = [j.submit({"stage": "request", "flow_id": str(i)}) for i in range(50)]
    rows = [f.result(5) for f in futs]
    j.close()
    assert [r["seq"] for r in rows] == list(range(1, 51))
    assert list(record.check_chain(read_rows(tmp_path / "journal"))) == []
    assert rows[0]["prev_hash"] == record.GENESIS


def test_concurrent_submitters_share_fsyncs_and_lose_nothing(tmp_path: Path) -> None:
    j = opened(tmp_path)
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        rows = list(pool.map(lambda i: j.write({"stage": "request", "flow_id": str(i)}), range(400)))
    j.close()
    assert sorted(r["seq"] for r in rows) == list(range(1, 401))
    assert len(list(read_rows(tmp_path / "journal"))) == 400


def test_restart_continues_seq_and_chain_after_a_torn_last_line(tmp_path: Path) -> None:
    j = opened(tmp_path)
    for i in range(3):
        j.write({"stage": "request", "flow_id": str(i)})
    chain_id = j.chain_id
    j.close()
    seg = segments(tmp_path / "journal")[-1][1]
    with open(seg, "ab") as f:
        f.write(b'{"seq": 4, "half a li')  # a crash in the middle of a write
    j = opened(tmp_path)
    row = j.write({"stage": "request", "flow_id": "after"})
    j.close()
    assert row["seq"] == 4 and row["chain_id"] == chain_id
    assert list(record.check_chain(read_rows(tmp_path / "journal"))) == []


def test_segments_rotate_and_the_chain_continues_across_them(tmp_path: Path) -> None:
    j = opened(tmp_path, segment_bytes=2000)
    for i in range(30):
        j.write({"stage": "request", "flow_id": str(i)})
    j.close()
    assert len(segments(tmp_path / "journal")) > 3
    rows = list(read_rows(tmp_path / "journal"))
    assert len(rows) == 30 and list(record.check_chain(rows)) == []
    assert [r["seq"] for r in read_rows(tmp_path / "journal", after_seq=25)] == [26, 27, 28, 29, 30]


def test_a_failed_write_is_reported_and_leaves_no_partial_line(tmp_path: Path) -> None:
    j = opened(tmp_path)
    j.write({"stage": "request", "flow_id": "ok"})
    real_fd, j._fd = j._fd, os.open("/dev/full", os.O_WRONLY)  # every write: ENOSPC, a full disk
    with pytest.raises(JournalError, match="No space left"):
        j.write({"stage": "request", "flow_id": "lost"})
    os.close(j._fd)
    j._fd = real_fd
    row = j.write({"stage": "request", "flow_id": "next"})
    j.close()
    assert row["seq"] == 2
    assert [r["flow_id"] for r in read_rows(tmp_path / "journal")] == ["ok", "next"]


def test_ingest_copies_the_journal_into_duckdb_once(tmp_path: Path) -> None:
    j = opened(tmp_path)
    for i in range(10):
        j.write({"stage": "request", "flow_id": str(i), "tables": ["t"], "request_headers": '[["a","b"]]',
                 "edited": False, "port": 443, "duration_ms": 1.5})
    assert store.ingest(tmp_path) == 10
    assert store.ingest(tmp_path) == 0
    j.write({"stage": "response", "flow_id": "9", "status_code": 200})
    j.close()
    assert store.ingest(tmp_path) == 1
    with store.connect_reader(tmp_path) as con:
        rows = store.rows_as_dicts(con.execute("SELECT * FROM audit.events ORDER BY seq"))
    assert [r["seq"] for r in rows] == list(range(1, 12))
    journal_rows = list(read_rows(tmp_path / "journal"))
    assert [r["row_hash"] for r in rows] == [r["row_hash"] for r in journal_rows]
    assert json.loads(rows[0]["request_headers"]) == [["a", "b"]]


def test_reader_sees_journal_rows_not_yet_ingested(tmp_path: Path) -> None:
    j = opened(tmp_path)
    j.write({"stage": "request", "flow_id": "a"})
    store.ingest(tmp_path)
    j.write({"stage": "request", "flow_id": "b"})
    j.close()
    with store.connect_reader(tmp_path) as con:
        assert con.execute("SELECT list(flow_id ORDER BY seq) FROM events WHERE flow_id IS NOT NULL").fetchone()[0] == ["a", "b"]
        assert con.execute("SELECT count(*) FROM timeline").fetchone()[0] == 2


def test_reader_works_before_anything_was_written(tmp_path: Path) -> None:
    with store.connect_reader(tmp_path) as con:
        assert con.execute("SELECT count(*) FROM timeline").fetchone()[0] == 0


def test_journal_lines_are_what_the_standard_library_would_write() -> None:
    """orjson writes the lines; readers and the ingest expect compact JSON with seq first."""
    from shield_addon.journal import journal_line

    row = record.seal({"stage": "request", "flow_id": "f", "path": "/ü\x1b[31m\u2028", "tables": ["a"], "port": 443,
                       "duration_ms": 1.25, "edited": False, "ts": "2026-11-28 01:00:00.000000"}, 7, "c", record.GENESIS)
    assert journal_line(row) == json.dumps(row, ensure_ascii=False, separators=(",", ":")).encode()
    assert journal_line(row).startswith(b'{"seq":7,')
    assert json.loads(journal_line({**row, "port": 2**70}))["port"] == 2**70  # past orjson: still written


def test_read_rows_can_parse_only_lines_holding_given_bytes(tmp_path: Path) -> None:
    """How a restart finds retry-mode holds without decoding every row of a big journal."""
    j = opened(tmp_path)
    j.write({"stage": "request", "flow_id": "a"})
    j.write({"stage": "request", "flow_id": "b", "hold_id": "h1"})
    j.write({"stage": "request", "flow_id": "c", "request_body": '{"hold_id":"fake"}'})  # escaped inside a string
    j.close()
    rows = list(read_rows(tmp_path / "journal", containing=b'"hold_id":"'))
    assert [r["flow_id"] for r in rows] == ["b"]
