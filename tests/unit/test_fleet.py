"""The fleet's pure parts: where its database is, how a journal row becomes a fleet row, what a
remote hold's console line says, and the review book's part in fleet-wide retries."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

from shield_addon import record, review
from shield_addon.addons.fleet import remote_comment
from shield_addon.fleet import fleet_url, schema, shown
from shield_addon.fleet.db import addresses


@pytest.mark.parametrize(("url", "found"), [
    ("postgresql://u:p@db.internal:6543/shield", [("db.internal", 6543)]),
    ("postgresql://u@10.0.0.5/shield", [("10.0.0.5", 5432)]),
    ("postgresql://u@a.example:1111,b.example:2222/x", [("a.example", 1111), ("b.example", 2222)]),
    ("postgresql://[::1]:7000/x", [("::1", 7000)]),
    ("host=db.internal port=7777 dbname=x", [("db.internal", 7777)]),
    ("host=/var/run/postgresql dbname=x", []),  # a Unix socket: no agent can tunnel to it
    ("host=db hostaddr=192.0.2.7 dbname=x", [("db", 5432), ("192.0.2.7", 5432)]),
])
def test_the_fleet_database_addresses_every_spelling(url: str, found: list, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("PGHOST", "PGHOSTADDR", "PGPORT"):
        monkeypatch.delenv(var, raising=False)
    assert addresses(url) == found


def test_libpq_environment_fills_in_what_the_url_leaves_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGHOST", "pg.internal")
    monkeypatch.setenv("PGPORT", "6000")
    assert addresses("postgresql:///shield") == [("pg.internal", 6000)]


def test_a_password_is_never_shown_and_the_environment_names_the_fleet(monkeypatch: pytest.MonkeyPatch) -> None:
    assert shown("postgresql://shield:s3cret@db:5432/x") == "postgresql://shield:***@db:5432/x"
    monkeypatch.setenv("SHIELD_FLEET", " postgresql://db/x ")
    assert fleet_url("") == "postgresql://db/x" and fleet_url("postgresql://other/y") == "postgresql://other/y"


def test_a_journal_row_as_a_fleet_row_keeps_its_line_and_loses_only_nuls() -> None:
    row = record.seal({"stage": "request", "agent": "bot\x00x", "tables": ["a\x00", "b"], "port": 443,
                       "request_body": "secret-free body", "ts": "2026-12-06 03:00:00.000000"}, 1, "c", record.GENESIS)
    line = '{"seq":1}'
    out = dict(zip(schema.SHIP_COLUMNS, schema.pg_row(row, line), strict=True))
    assert out["agent"] == "bot\ufffdx" and out["tables"] == ["a\ufffd", "b"] and out["port"] == 443
    assert out["line"] == line and "request_body" not in out  # the big columns live in `line` only


def test_a_remote_holds_console_line_names_its_proxy_and_cannot_carry_escapes() -> None:
    created = datetime(2026, 12, 6, 3, 0, 0, tzinfo=UTC)
    row = SimpleNamespace(hold_id="h", proxy="node-\x1b[2Jb", summary="agent x wants \x1b]0;owned\x07 delete",
                          created_at=created, decision=None, reviewer=None, reason=None, decided_on=None)
    line = remote_comment(row, created.timestamp() + 12)
    assert line.startswith("on proxy node-") and "held 12s" in line and "\x1b" not in line and "\x07" not in line
    row.decision, row.reviewer, row.decided_on, row.reason = "denied", "rita", "node-c", "wrong \x1b[31mcluster"
    assert "denied by rita on node-c" in remote_comment(row, 0) and "\x1b" not in remote_comment(row, 0)


def test_a_hold_whose_proxy_stopped_beating_says_its_request_may_be_gone_in_wait_mode_only() -> None:
    created = datetime(2026, 12, 6, 3, 0, 0, tzinfo=UTC)
    row = SimpleNamespace(hold_id="h", proxy="b", summary="agent x wants delete", created_at=created, decision=None,
                          mode="wait", owner_silent_s=14.9)
    assert "silent" not in remote_comment(row, created.timestamp())
    row.owner_silent_s = 42.7
    assert remote_comment(row, created.timestamp()).endswith("| proxy b silent for 42s: the agent's request may be gone")
    row.mode = "retry"  # the fleet keeps a retry-mode approval: another proxy can use it
    assert "silent" not in remote_comment(row, created.timestamp())


def test_an_answer_delivered_by_another_proxy_closes_the_retry_hold_here() -> None:
    book = review.Book()
    ans = book.arrive("k", "h1", "bot", 0, None, "deny")
    assert book.decide(ans.hold, review.APPROVED, "rita", 1)
    assert book.used_elsewhere(ans.hold) and ans.hold.status == review.USED and "k" not in book.by_key
    assert not book.used_elsewhere(ans.hold)  # once
    again = book.arrive("k", "h2", "bot", 2, None, "deny")
    assert again.new and again.kind == "wait"


def test_a_proxy_with_no_fleet_does_not_load_the_database_driver() -> None:
    import subprocess
    import sys

    code = "import sys, shield_addon.addon; print('psycopg' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"


def test_the_trails_columns_are_those_the_fleets_migrations_made() -> None:
    """A column added to the trail needs a fleet migration that adds it (and ships it)."""
    assert schema.V1_COLUMNS == record.COLUMN_NAMES
