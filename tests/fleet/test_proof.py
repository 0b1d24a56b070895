"""`shield verify --fleet` against tampering in PostgreSQL: every edit by someone with database
rights is caught and named by its proxy and first bad seq."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from scripts import fleet_trail
from shield_addon import checkpoints
from shield_addon.fleet import db
from shield_addon.fleet.proof import typed_mismatch
from shield_addon.fleet.schema import TYPED_NAMES, pg_row

FLOWS = 30  # per proxy: 64 events, checkpoints every 20


@pytest.fixture
def fleet(fleet_url: str, tmp_path: Path) -> tuple[str, list[fleet_trail.Trail], list[str]]:
    """Three proxies' chains in a fresh database, and each proxy's exported public key."""
    trails = [fleet_trail.write_trail(tmp_path, f"proxy-{n}", FLOWS, 1.7e9, 1.7e9 + 3600, seed=n, every_events=20)
              for n in (1, 2, 3)]
    for t in trails:
        fleet_trail.ship(fleet_url, t)
    keys = []
    for t in trails:
        pem = tmp_path / f"{t.name}.pub"
        pem.write_text(checkpoints.public_pem(checkpoints.load_or_create_key(t.confdir)))
        keys.append(str(pem))
    return fleet_url, trails, keys


def verify(url: str, keys: list[str]) -> subprocess.CompletedProcess:
    args = [a for k in keys for a in ("--key", k)]
    return subprocess.run([sys.executable, "-m", "shield_addon.cli", "verify", "--fleet", url, *args],
                          capture_output=True, text=True, timeout=60, env={**os.environ, "SHIELD_FLEET": ""})


def edit(url: str, sql: str, *params: object) -> None:
    with psycopg.connect(url, autocommit=True) as con:
        assert con.execute(sql, params).rowcount >= 1  # type: ignore[arg-type]


def broken_line(cp: subprocess.CompletedProcess, proxy: str) -> str:
    assert cp.returncode == 1, cp.stdout + cp.stderr
    found = [x for x in cp.stdout.splitlines() if x.startswith(f"BROKEN proxy {proxy} ")]
    assert len(found) == 1, cp.stdout
    return found[0]


def test_an_untouched_fleet_verifies(fleet: tuple) -> None:
    url, trails, keys = fleet
    cp = verify(url, keys)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    for t in trails:
        assert f"OK     proxy {t.name} chain {t.chain_id}: {t.events} events, seq 1..{t.events}" in cp.stdout
    assert cp.stdout.splitlines()[-1] == f"OK: 3 chains, {sum(t.events for t in trails)} events"


def test_an_update_of_a_typed_column_is_caught_though_the_line_is_untouched(fleet: tuple) -> None:
    url, trails, keys = fleet
    edit(url, "UPDATE chain_rows SET agent = 'x' WHERE chain_id = %s AND seq = 17", trails[1].chain_id)
    line = broken_line(verify(url, keys), "proxy-2")
    assert "seq 17: edited in PostgreSQL: column agent" in line
    assert "BROKEN proxy" not in verify(url, keys).stdout.replace(line, "")


@pytest.mark.parametrize(("column", "value"), [("ts", "2001-01-01"), ("decision", "approved"), ("tables", "{x}"),
                                               ("duration_ms", "1"), ("seq", "1000")])
def test_every_typed_column_is_checked(fleet: tuple, column: str, value: str) -> None:
    url, trails, keys = fleet
    edit(url, f"UPDATE chain_rows SET {column} = %s WHERE chain_id = %s AND seq = 9", value, trails[0].chain_id)
    line = broken_line(verify(url, keys), "proxy-1")
    assert "seq 9:" in line or column == "seq" and "seq 9: missing rows" in line, line


def test_an_edited_line_is_caught(fleet: tuple) -> None:
    url, trails, keys = fleet
    edit(url, "UPDATE chain_rows SET line = replace(line, '\"agent\":\"', '\"agent\":\"x') "
              "WHERE chain_id = %s AND seq = 23", trails[2].chain_id)
    line = broken_line(verify(url, keys), "proxy-3")
    assert f"chain {trails[2].chain_id}: seq 23: edited" in line


def test_a_line_and_its_typed_columns_edited_together_break_the_hash(fleet: tuple) -> None:
    url, trails, keys = fleet
    edit(url, "UPDATE chain_rows SET agent = 'x' || agent, line = replace(line, '\"agent\":\"', '\"agent\":\"x') "
              "WHERE chain_id = %s AND seq = 23", trails[2].chain_id)
    assert "seq 23: edited: row_hash does not match" in broken_line(verify(url, keys), "proxy-3")


def test_a_deleted_row_is_a_gap(fleet: tuple) -> None:
    url, trails, keys = fleet
    edit(url, "DELETE FROM chain_rows WHERE chain_id = %s AND seq = 30", trails[0].chain_id)
    assert "seq 30: missing rows: seq 30 absent" in broken_line(verify(url, keys), "proxy-1")


def test_a_deleted_tail_is_caught_by_the_signed_checkpoint(fleet: tuple) -> None:
    url, trails, keys = fleet
    edit(url, "DELETE FROM chain_rows WHERE chain_id = %s AND seq > 50", trails[0].chain_id)
    line = broken_line(verify(url, keys), "proxy-1")
    assert "seq 60: truncated: a checkpoint signs seq 60 but the chain ends at seq 50" in line


def test_a_checkpoint_signed_with_another_key_is_forged(fleet: tuple) -> None:
    url, trails, keys = fleet
    t = trails[1]
    with psycopg.connect(url) as con:
        seq, row_hash = con.execute("SELECT seq, row_hash FROM chain_rows WHERE chain_id = %s AND seq = 40",
                                    (t.chain_id,)).fetchone()
    forged = checkpoints.sign(Ed25519PrivateKey.generate(), t.chain_id, seq, row_hash, 1.7e9)
    edit(url, "INSERT INTO checkpoints (chain_id, seq, line) VALUES (%s, %s, %s)", t.chain_id, seq, json.dumps(forged))
    assert "seq 40: forged checkpoint" in broken_line(verify(url, keys), "proxy-2")


def test_a_checkpoint_moved_to_another_chain_is_forged(fleet: tuple) -> None:
    url, trails, keys = fleet
    edit(url, "UPDATE checkpoints SET chain_id = %s WHERE chain_id = %s AND seq = 20", trails[1].chain_id,
         trails[0].chain_id)
    assert "seq 20: forged checkpoint" in broken_line(verify(url, keys), "proxy-2")


def test_without_a_proxy_s_key_its_chain_is_not_proven(fleet: tuple) -> None:
    url, _, keys = fleet
    cp = verify(url, keys[:2])
    assert "forged checkpoint" in broken_line(cp, "proxy-3") and "not passed with --key" in cp.stdout
    assert cp.stdout.splitlines()[-1] == "BROKEN: 1 of 3 chains"


def test_rows_of_an_unregistered_chain_are_verified_too(fleet: tuple) -> None:
    url, trails, keys = fleet
    edit(url, "DELETE FROM proxies WHERE chain_id = %s", trails[2].chain_id)
    edit(url, "UPDATE chain_rows SET agent = 'x' WHERE chain_id = %s AND seq = 3", trails[2].chain_id)
    cp = verify(url, keys)
    assert "BROKEN proxy (unregistered) chain " + trails[2].chain_id + ": seq 3: edited in PostgreSQL" in cp.stdout


def test_an_empty_fleet_has_nothing_to_verify(fleet_url: str, tmp_path: Path) -> None:
    with db.connect(fleet_url) as con:
        db.migrate(con)  # as the first proxy does
    pem = tmp_path / "k.pub"
    pem.write_text(checkpoints.public_pem(Ed25519PrivateKey.generate()))
    cp = verify(fleet_url, [str(pem)])
    assert cp.returncode == 0 and "nothing to verify" in cp.stdout


def test_typed_columns_are_compared_as_postgresql_reads_them() -> None:
    from datetime import datetime

    line = json.dumps({"seq": 3, "chain_id": "c", "ts": "2026-01-02 03:04:05.000006", "agent": "a\x00b",
                       "tables": ["t"], "duration_ms": 12})
    row = json.loads(line)
    stored = list(pg_row(row, line)[:-1])
    stored[TYPED_NAMES.index("ts")] = datetime(2026, 1, 2, 3, 4, 5, 6)
    stored[TYPED_NAMES.index("duration_ms")] = 12.0
    assert typed_mismatch(stored, row, line) is None
    stored[TYPED_NAMES.index("agent")] = "a b"
    assert typed_mismatch(stored, row, line) == "agent"
