"""The fleet's schema on a real PostgreSQL: migrations apply once, and the events view reads
every shipped line, even one whose body held a NUL."""

from __future__ import annotations

import json

from shield_addon import record
from shield_addon.fleet import db, schema


def test_migrations_apply_once_and_the_events_view_reads_a_line_with_a_nul(fleet_url: str) -> None:
    with db.connect(fleet_url) as con:
        assert db.migrate(con) == schema.VERSION and db.migrate(con) == schema.VERSION
        row = record.seal({"stage": "request", "agent": "bot", "request_body": "a\x00b", "ts": "2026-12-06 04:00:00.000000"},
                          1, "chain-1", record.GENESIS)
        line = json.dumps(row, separators=(",", ":"))
        assert "\\u0000" in line
        con.execute("INSERT INTO proxies (chain_id, name) VALUES ('chain-1', 'p1')")
        columns = ", ".join(schema.SHIP_COLUMNS)
        con.execute(f"INSERT INTO chain_rows ({columns}) VALUES ({', '.join(['%s'] * len(schema.SHIP_COLUMNS))})",  # type: ignore[arg-type]
                    schema.pg_row(row, line))
        got = con.execute("SELECT request_body, proxy, agent FROM events").fetchall()
    assert got == [("a\ufffdb", "p1", "bot")]
