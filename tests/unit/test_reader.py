"""The reader API on a real trail (journal + audit.duckdb + an un-ingested tail): the one
place every data command asks, with the shared decision vocabulary and glob semantics."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from shield_addon import cli, store
from shield_addon.core.model import NOT_FORWARDED, Decision
from shield_addon.journal import Journal
from shield_addon.reader import Filters, Reader, ReaderError

T0 = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
# (flow, agent, tables, decision): one flow for every decision a flow can end with
FLOWS = [
    ("f-allowed", "Deploy-Bot", ["Users"], Decision.ALLOWED), ("f-approved", "deploy-bot", [], Decision.APPROVED),
    ("f-denied", "data-bot", ["orders"], Decision.DENIED), ("f-blocked", "data-bot", ["users", "x"], Decision.BLOCKED),
    ("f-killed", "ops", [], Decision.KILLED), ("f-timed-out", "ops", [], Decision.TIMED_OUT),
    ("f-abandoned", "ops", [], Decision.ABANDONED),
]


@pytest.fixture(scope="module")
def trail(tmp_path_factory: pytest.TempPathFactory) -> Path:
    audit = tmp_path_factory.mktemp("reader") / "audit"
    j = Journal(audit / "journal")
    j.open()
    for i, (fid, agent, tables, decision) in enumerate(FLOWS):
        held = decision not in (Decision.ALLOWED, Decision.BLOCKED)
        ts = (T0 + timedelta(seconds=i)).isoformat()
        base = {"flow_id": fid, "agent": agent, "method": "GET", "host": "API.example.com", "path": f"/{fid}", "ts": ts}
        j.write({**base, "stage": "request", "tables": tables, "verdict": "hold" if held else "allow", "mode": "enforce",
                 "decision": None if held else str(decision)})
        if held:
            j.write({**base, "stage": "decision", "decision": str(decision), "reviewer": "Alice"})
        if i == 3:
            j.close()
            store.ingest(audit)  # the first flows in audit.duckdb, the rest only in the journal
            j = Journal(audit / "journal")
            j.open()
    j.close()
    return audit


def flow_ids(reader: Reader, **filters: str) -> set[str]:
    return {r["flow_id"] for r in reader.timeline(Filters(**filters)).dicts()}


def test_globs_are_case_insensitive_like_rules(trail: Path) -> None:
    with Reader(trail) as r:
        assert flow_ids(r, agent="DEPLOY-*") == {"f-allowed", "f-approved"}
        assert flow_ids(r, host="api.EXAMPLE.com") == {f[0] for f in FLOWS}  # a glob matches the whole value
        assert flow_ids(r, host="api") == set()
        assert flow_ids(r, table="users") == {"f-allowed", "f-blocked"}
        assert flow_ids(r, table="ORD*") == {"f-denied"}
        assert flow_ids(r, reviewer="alice", agent="ops") == {"f-killed", "f-timed-out", "f-abandoned"}


def test_the_newest_n_flows_still_come_oldest_first(trail: Path) -> None:
    with Reader(trail) as r:
        assert [row["flow_id"] for row in r.timeline(limit=2).dicts()] == ["f-timed-out", "f-abandoned"]


def test_views_take_their_decision_groups_from_the_vocabulary(trail: Path) -> None:
    with Reader(trail) as r:
        denials = {row["flow_id"] for row in r.query("SELECT flow_id FROM denials").dicts()}
        assert denials == {fid for fid, *_, d in FLOWS if d in NOT_FORWARDED}
        assert "f-abandoned" in denials  # the old list left it out; the export always had it
        ops = r.query("SELECT killed_or_lapsed FROM by_agent WHERE agent = 'ops'").rows
        assert ops == [(3,)]


def test_a_flow_by_prefix_with_its_chain(trail: Path) -> None:
    with Reader(trail) as r:
        flow = r.flow("f-appr")
        assert [e["stage"] for e in flow.events] == ["request", "decision"]
        assert all(ok == (True, True) for ok in flow.chain.values())
        with pytest.raises(ReaderError, match="ambiguous"):
            r.flow("f-")
        with pytest.raises(ReaderError, match="no flow"):
            r.flow("nope")


def test_sql_reads_only(trail: Path) -> None:
    with Reader(trail) as r:
        assert r.query("SELECT count(*) AS n FROM timeline").dicts() == [{"n": len(FLOWS)}]
        for write in ("DELETE FROM events", "SELECT 1; DROP TABLE events", ""):
            with pytest.raises(ReaderError, match="reads only"):
                r.query(write)


def test_export_takes_the_same_filters(trail: Path, tmp_path: Path) -> None:
    out = tmp_path / "ops.jsonl"
    with Reader(trail) as r:
        manifest = r.export("jsonl", out, Filters(agent="OPS"), described={"agent": "OPS"})
    events = [json.loads(line) for line in out.read_text().splitlines()]
    assert {e["flow_id"] for e in events} == {"f-killed", "f-timed-out", "f-abandoned"}
    assert manifest["events"] == len(events) == 6 and manifest["filters"] == {"agent": "OPS"}


def test_ocsf_export_counts_every_flow_not_forwarded_as_a_failure(trail: Path, tmp_path: Path) -> None:
    out = tmp_path / "siem.jsonl"
    with Reader(trail) as r:
        r.export("ocsf", out)
    status = {e["metadata"]["uid"]: e["status"] for e in map(json.loads, out.read_text().splitlines())}
    assert {fid for fid, s in status.items() if s == "Failure"} == {fid for fid, *_, d in FLOWS if d in NOT_FORWARDED}


def test_timeline_in_process_with_a_glob_in_any_case(trail: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["timeline", "--json", "--agent", "deploy-BOT", "--dir", str(trail)]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["flow_id"] for r in rows] == ["f-allowed", "f-approved"]
