"""`flows`, folded batch by batch at ingest and merged with the journal tail by readers, is
exactly what grouping every event by flow gives, whatever the batch boundaries."""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from shield_addon import store
from shield_addon.journal import Journal

T0 = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)


def random_events(rng: random.Random, n_flows: int) -> list[dict]:
    """Interleaved flows: request, maybe a decision, maybe a response or an error, each later than the last."""
    pending: list[list[dict]] = []
    for i in range(n_flows):
        fid = f"flow-{i:04d}"
        held = rng.random() < 0.3
        stages = [{"stage": "request", "flow_id": fid, "agent": rng.choice(["a", "b", None]), "method": "GET",
                   "host": "h", "path": f"/{i}", "namespace": rng.choice(["prod", None]), "tables": rng.choice([["t"], None]),
                   "verdict": "hold" if held else "allow", "rule_id": rng.choice(["r1", None]),
                   "decision": None if held else "allowed"}]
        if held:
            stages.append({"stage": "decision", "flow_id": fid, "decision": rng.choice(["approved", "denied"]),
                           "reviewer": rng.choice(["ann", "bo"]), "rule_id": "late-rule"})
        if rng.random() < 0.05:  # refused by mitmproxy before any request event (a 413): error events only
            stages = [{"stage": "error", "flow_id": fid, "agent": "a", "error": "too big"}]
        if rng.random() < 0.8:
            stages.append({"stage": rng.choice(["response", "error"]), "flow_id": fid,
                           "status_code": rng.choice([200, 500, None]), "outcome": "forwarded",
                           "duration_ms": rng.random() * 100, "agent": "not-the-first"})
        pending.append(stages)
    out: list[dict] = []
    while pending:
        stages = rng.choice(pending)
        out.append(stages.pop(0))
        if not stages:
            pending.remove(stages)
        if rng.random() < 0.05:
            out.append({"stage": "ruleset", "ruleset_sha256": "x"})  # no flow
    for k, e in enumerate(out):
        e["ts"] = (T0 + timedelta(milliseconds=k)).isoformat()
    return out


def regrouped(con: duckdb.DuckDBPyConnection) -> list[tuple]:
    return sorted(con.execute(f"SELECT * FROM ({store.fold_sql('events')})").fetchall(), key=repr)


def folded(con: duckdb.DuckDBPyConnection) -> list[tuple]:
    return sorted(con.execute("SELECT * FROM flows").fetchall(), key=repr)


def opened(tmp_path: Path, events: Sequence[dict] = ()) -> Journal:
    j = Journal(tmp_path / "journal")
    j.open()
    for e in events:
        j.write(e)
    return j


def the_file(tmp_path: Path) -> duckdb.DuckDBPyConnection:
    """audit.duckdb as a plain DuckDB client opens it."""
    return duckdb.connect(str(tmp_path / store.DB_NAME), read_only=True)


@pytest.mark.parametrize("seed", range(4))
def test_flows_folded_in_any_batches_equal_regrouping_every_event(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    events = random_events(rng, 120)
    j = opened(tmp_path)
    cuts = sorted(rng.sample(range(1, len(events)), 6))
    start, set_up = 0, False
    for cut in cuts:  # some batches ingested, the rest left in the journal for the reader
        for e in events[start:cut]:
            j.write(e)
        start = cut
        if rng.random() < 0.7:
            store.ingest(tmp_path, setup=not set_up or rng.random() < 0.5)  # as the Ingester: once, then maybe again
            set_up = True
    for e in events[start:]:
        j.write(e)
    j.close()
    with store.connect_reader(tmp_path) as con:
        assert folded(con) == regrouped(con)
        assert con.execute("SELECT count(*) FROM timeline").fetchone()[0] == 120
    store.ingest(tmp_path)
    with the_file(tmp_path) as con:
        assert folded(con) == regrouped(con)
        # the file's own timeline view serves plain DuckDB clients
        assert con.execute("SELECT count(*) FROM timeline").fetchone()[0] == 120


def test_large_batches_fold_by_join_not_literal_lists(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store, "LITERAL_IN_MAX", 3)
    rng = random.Random(7)
    events = random_events(rng, 60)
    j = opened(tmp_path, events[:70])
    store.ingest(tmp_path)
    for e in events[70:]:
        j.write(e)
    j.close()
    with store.connect_reader(tmp_path) as con:
        assert folded(con) == regrouped(con)
    store.ingest(tmp_path)
    with the_file(tmp_path) as con:
        assert folded(con) == regrouped(con)


def test_a_file_from_before_flows_gets_them_built(tmp_path: Path) -> None:
    opened(tmp_path, random_events(random.Random(3), 30)).close()
    store.ingest(tmp_path)
    with duckdb.connect(str(tmp_path / store.DB_NAME)) as con:
        con.execute("DROP VIEW denials; DROP VIEW by_agent; DROP VIEW pending; DROP VIEW by_reviewer; "
                    "DROP VIEW holds; DROP VIEW timeline; DROP TABLE flows")
    store.ingest(tmp_path)  # nothing new to append: setup alone rebuilds flows
    with the_file(tmp_path) as con:
        assert con.execute("SELECT count(*) FROM flows").fetchone()[0] == 30
        assert folded(con) == regrouped(con)


def test_show_finds_a_flow_by_id_or_unique_prefix(tmp_path: Path) -> None:
    j = opened(tmp_path, random_events(random.Random(5), 20))
    store.ingest(tmp_path)
    j.write({"stage": "request", "flow_id": "flow-9999", "ts": T0.isoformat()})  # only in the journal tail
    j.close()
    with store.connect_reader(tmp_path) as con:
        assert [f[0] for f in store.find_flows(con, "flow-0007")] == ["flow-0007"]
        assert len(store.find_flows(con, "flow-00")) == 6  # ambiguous: capped
        assert [f[0] for f in store.find_flows(con, "flow-99")] == ["flow-9999"]
        assert store.find_flows(con, "nope") == []
        fid, first, last = store.find_flows(con, "flow-0003")[0]
        seqs = [r[0] for r in con.execute("SELECT seq FROM events WHERE flow_id = ? ORDER BY seq", [fid]).fetchall()]
        assert (first, last) == (seqs[0], seqs[-1])


def test_ingest_reads_on_from_where_it_stopped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With a cursor, a batch reads only the lines after the last one ingested; bounded
    batches still take everything, in order."""
    j = opened(tmp_path, [{"stage": "request", "flow_id": f"f{i}"} for i in range(50)])
    cursor = store.Cursor()
    assert store.ingest(tmp_path, cursor=cursor) == 50
    assert cursor.seq == 50 and cursor.offset == cursor.path.stat().st_size
    for i in range(50, 60):
        j.write({"stage": "request", "flow_id": f"f{i}"})
    read: list[int] = []
    real = store.new_lines

    def spy(jdir: Path, have: int, upto: int, cur: store.Cursor, max_bytes: int = store.BATCH_BYTES) -> bytes:
        read.append(cur.offset if cur.seq == have else 0)
        return real(jdir, have, upto, cur, max_bytes)

    monkeypatch.setattr(store, "new_lines", spy)
    assert store.ingest(tmp_path, cursor=cursor) == 10
    assert read[0] > 0, "the second batch started at the cursor, not at the segment's start"
    monkeypatch.setattr(store, "BATCH_BYTES", 1500)  # a few lines per batch: many transactions
    monkeypatch.setattr(store, "new_lines", lambda *a: real(*a[:4], 1500))
    for i in range(60, 90):
        j.write({"stage": "request", "flow_id": f"f{i}"})
    j.close()
    assert store.ingest(tmp_path, cursor=cursor) == 30
    with the_file(tmp_path) as con:
        assert con.execute("SELECT list(seq ORDER BY seq) FROM events").fetchone()[0] == list(range(1, 91))
        assert con.execute("SELECT count(*) FROM flows").fetchone()[0] == 90


def test_a_flow_with_a_second_request_event_still_ingests(tmp_path: Path) -> None:
    """The addon gives replays their own flow_id, but a journal from elsewhere may repeat one:
    the batch is redone with every flow looked up, never left stuck."""
    j = opened(tmp_path, [{"stage": "request", "flow_id": "same", "agent": "a"}])
    store.ingest(tmp_path)
    j.write({"stage": "request", "flow_id": "same", "agent": "b", "decision": "allowed"})
    j.write({"stage": "request", "flow_id": "other"})
    j.close()
    assert store.ingest(tmp_path) == 2
    with the_file(tmp_path) as con:
        assert folded(con) == regrouped(con)
        assert con.execute("SELECT count(*) FROM flows").fetchone()[0] == 2
