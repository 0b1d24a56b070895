"""The reader's session on a real trail (audit.duckdb + a journal tail not yet in it): flows
found by id and by prefix, at the prefix's boundaries, in the file, in the tail and across
both; and what a read-only command leaves unimported."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from shield_addon import queries, segments, session, store
from shield_addon.journal import Journal
from shield_addon.reader import Reader, ReaderError

# In the file: ids that are prefixes of each other, ids with LIKE wildcards, a quote, and
# characters past ASCII. In the tail: a new flow, and one continuing a flow of the file.
IN_FILE = ["abcd1234", "abcd1234-0001", "abcd1235-0002", "ab%d-0003", "ab_d-0004", "it's-0005", "zzé-0006",
           "cont-0007"]
IN_TAIL = ["abcd1236-0008", "tail\U0010ffff-0009"]
CONTINUED = "cont-0007"


def journal_requests(audit: Path, flow_ids: list[str], *more: dict) -> None:
    """A request event per flow id (then `more` events), appended to the journal."""
    j = Journal(audit / "journal")
    j.open()
    for fid in flow_ids:
        j.write({"flow_id": fid, "stage": "request", "agent": "a", "method": "GET", "host": "h", "path": "/"})
    for event in more:
        j.write(event)
    j.close()


@pytest.fixture(scope="module")
def trail(tmp_path_factory: pytest.TempPathFactory) -> Path:
    audit = tmp_path_factory.mktemp("session") / "audit"
    journal_requests(audit, IN_FILE)
    store.ingest(audit)
    journal_requests(audit, IN_TAIL, {"flow_id": CONTINUED, "stage": "response", "status_code": 200})
    return audit


def found(trail: Path, prefix: str) -> list[str]:
    with Reader(trail) as r:
        try:
            return [e["flow_id"] for e in r.flow(prefix).events][:1]
        except ReaderError as e:
            return [str(e).split(":")[0]]


@pytest.mark.parametrize(("prefix", "expected"), [
    ("abcd1234", ["abcd1234"]),  # a whole id wins over the longer ids it starts
    ("abcd1234-", ["abcd1234-0001"]),
    ("abcd123", ["'abcd123' is ambiguous"]),  # two in the file, one in the tail
    ("abcd1236", ["abcd1236-0008"]),  # only in the tail
    ("ab%", ["ab%d-0003"]),  # % and _ are characters here, not LIKE's wildcards
    ("ab_", ["ab_d-0004"]),
    ("it'", ["it's-0005"]),
    ("zzé", ["zzé-0006"]),
    ("tail\U0010ffff", ["tail\U0010ffff-0009"]),  # the last code point: no upper bound past it
    ("ABCD1234", ["no flow with id 'ABCD1234'"]),  # ids are case-sensitive
    ("abcd1237", ["no flow with id 'abcd1237'"]),
])
def test_a_flow_by_id_or_prefix(trail: Path, prefix: str, expected: list[str]) -> None:
    assert found(trail, prefix) == expected


def test_the_session_finds_what_the_folded_flows_view_finds(trail: Path) -> None:
    """Session.find_flows reads audit.flows and the tail, never the folded view: same answers."""
    prefixes = ["", "a", "ab", "abcd", "abcd1234", "abcd1234-", "abcd1235", "ab%", "it'", "z", "t", "cont", "c", "x"]
    s = session.open_session(trail)
    try:
        for p in prefixes:
            assert s.find_flows(p) == session.find_flows(s.con, p), p
    finally:
        s.con.close()


def test_a_file_from_before_the_prefix_lookup_gets_it_at_the_next_ingest(tmp_path: Path) -> None:
    audit = tmp_path / "audit"
    journal_requests(audit, IN_FILE)
    store.ingest(audit)
    con = duckdb.connect(str(audit / "audit.duckdb"))
    con.execute("DROP TABLE flow_heads")
    con.close()
    s = session.open_session(audit)
    try:
        assert not s.file_heads and s.find_flows("abcd1235") == session.find_flows(s.con, "abcd1235")  # the scan, still right
    finally:
        s.con.close()
    store.ingest(audit)
    con = duckdb.connect(str(audit / "audit.duckdb"))
    heads = con.execute("SELECT head, flow_id FROM flow_heads ORDER BY flow_id").fetchall()
    con.close()
    assert heads == sorted(((f[:4], f) for f in IN_FILE), key=lambda h: h[1])


def test_a_flow_continued_in_the_tail_spans_file_and_tail(trail: Path) -> None:
    with Reader(trail) as r:
        flow = r.flow("cont")
    assert [e["stage"] for e in flow.events] == ["request", "response"]
    assert all(ok == (True, True) for ok in flow.chain.values())


def test_show_needs_no_folded_flows_and_timeline_does(trail: Path) -> None:
    s = session.open_session(trail, views=())
    try:
        s.find_flows("abcd1234")
        assert "flows" not in s.views
        s.add_views(["timeline"])
        assert {"flows", "timeline"} <= s.views
        assert s.con.execute("SELECT status_code FROM timeline WHERE flow_id = ?", [CONTINUED]).fetchall() == [(200,)]
    finally:
        s.con.close()


@pytest.mark.parametrize("prefix", ["", "a", "abc", "a\U0010ffff", "\U0010ffff", "a\U0010ffff\U0010ffff", "x\ud7ff", "é"])
def test_prefix_range_holds_exactly_the_strings_that_start_with_it(prefix: str) -> None:
    low, high = queries.prefix_range(prefix)
    assert low == prefix
    for s in (prefix, prefix + "\x00", prefix + "zz", prefix + "\U0010ffff"):
        assert s >= low and (high is None or s < high)
    if high is not None:  # the first string past every one that starts with the prefix
        assert not high.startswith(prefix) and high > prefix
        high.encode("utf-8")  # never a lone surrogate: DuckDB could not bind it


def test_prefix_range_bounds() -> None:
    assert queries.prefix_range("abcd1234") == ("abcd1234", "abcd1235")
    assert queries.prefix_range("") == ("", None)
    assert queries.prefix_range("a\U0010ffff") == ("a\U0010ffff", "b")
    assert queries.prefix_range("\U0010ffff") == ("\U0010ffff", None)
    assert queries.prefix_range("x\ud7ff") == ("x\ud7ff", "x\ue000")


@pytest.mark.parametrize("scan_below", [0, 1, 300, 1 << 20])
def test_offset_after_finds_where_the_newer_rows_start(tmp_path: Path, scan_below: int) -> None:
    """Bisection and the line-by-line rest agree at every seq, with rows of uneven length
    and a torn last line (a write in progress)."""
    j = Journal(tmp_path / "journal")
    j.open()
    for i in range(60):
        j.write({"flow_id": f"f{i}", "stage": "request", "path": "/" + "x" * (i * 37 % 500)})
    j.close()
    [(_, seg)] = segments.segments(tmp_path / "journal")
    data = seg.read_bytes()
    starts = [0, *(k + 1 for k in range(len(data)) if data[k:k + 1] == b"\n")]  # starts[n]: the line of seq n + 1
    for seq in range(0, 62):
        assert segments.offset_after(seg, seq, scan_below) == starts[min(seq, 60)], seq
    with open(seg, "ab") as f:
        f.write(b'{"seq":61,"chain_id":"torn')
    assert segments.offset_after(seg, 60, scan_below) == len(data)
    assert segments.offset_after(seg, 59, scan_below) == starts[59]


def test_a_reader_reads_only_the_rows_after_the_store(tmp_path: Path) -> None:
    audit = tmp_path / "audit"
    journal_requests(audit, [f"f{i}" for i in range(40)])
    store.ingest(audit, upto_seq=33)
    s = session.open_session(audit)
    try:
        assert s.con.execute("SELECT list(seq ORDER BY seq) FROM journal_tail").fetchone()[0] == list(range(34, 41))
        assert s.con.execute("SELECT count(*), max(seq) FROM events").fetchone() == (40, 40)
    finally:
        s.con.close()


def test_reading_commands_load_neither_the_writer_nor_duckdbs_python_wrapper(trail: Path) -> None:
    """A new interpreter each: the journal writer (asyncio, threads) and `import duckdb` cost
    every command tens of ms; the reader needs neither."""
    for argv in (["show", "abcd1234", "--json"], ["timeline", "--json"], ["sql", "SELECT count(*) FROM events"]):
        probe = ("import sys, json\nfrom shield_addon.cli import main\nrc = main(sys.argv[1:])\n"
                 "print(json.dumps([rc, sorted(m for m in ('duckdb', '_duckdb', 'shield_addon.journal', 'asyncio',"
                 " 'shield_addon.store') if m in sys.modules)]), file=sys.stderr)")
        cp = subprocess.run([sys.executable, "-c", probe, *argv, "--dir", str(trail)], capture_output=True, text=True,
                            timeout=60)
        rc, loaded = json.loads(cp.stderr.strip().splitlines()[-1])
        assert rc == 0, cp.stderr
        expected = ["_duckdb"] if "_duckdb" in sys.modules or _has_engine_module() else ["duckdb"]
        assert loaded == expected, argv


def _has_engine_module() -> bool:
    import importlib.util

    return importlib.util.find_spec("_duckdb") is not None
