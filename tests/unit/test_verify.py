"""`shield verify` against every kind of tampering: each must be caught and named."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from shield_addon import checkpoints, record, store
from shield_addon.journal import Journal, journal_line, segments

N = 40


@pytest.fixture
def trail(tmp_path: Path) -> Path:
    """A real trail: journal segments, signed checkpoints every 10 events, audit.duckdb."""
    audit, conf = tmp_path / "audit", tmp_path / "conf"
    key = checkpoints.load_or_create_key(conf)
    j = Journal(audit / "journal", segment_bytes=3000)
    j.open()
    cp = checkpoints.Checkpointer(audit / "checkpoints.log", key, j.chain_id, every_events=10, every_seconds=3600)
    j.on_commit = cp.on_commit
    for i in range(N):
        j.write({"stage": "request", "flow_id": f"f{i}", "agent": "bot", "tables": ["t"], "edited": False, "duration_ms": i / 3})
    j.close()
    cp.checkpoint(*j.tip)
    store.ingest(audit)
    return audit


def verify(audit: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "shield_addon.cli", "verify", "--dir", str(audit),
                           "--confdir", str(audit.parent / "conf"), *extra], capture_output=True, text=True, timeout=60)


def journal_lines(audit: Path) -> list[tuple[Path, list[bytes]]]:
    return [(p, p.read_bytes().splitlines(keepends=True)) for _, p in segments(audit / "journal")]


def rewrite_journal(audit: Path, edit) -> None:
    """Apply edit(list of all rows) and lay the rows out again in the same segment files."""
    files = journal_lines(audit)
    rows = [json.loads(line) for _, lines in files for line in lines]
    rows = edit(rows)
    out = iter(rows)
    for path, lines in files:
        chunk = [next(out, None) for _ in lines]
        path.write_bytes(b"".join(json.dumps(r, separators=(",", ":")).encode() + b"\n" for r in chunk if r))


def test_an_untouched_trail_verifies(trail: Path) -> None:
    cp = verify(trail)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert cp.stdout.startswith(f"OK: {N} events, seq 1..{N}") and f"up to seq {N}" in cp.stdout


def test_verify_needs_only_the_exported_public_key(trail: Path, tmp_path: Path) -> None:
    pub = tmp_path / "shield.pub"
    out = subprocess.run([sys.executable, "-m", "shield_addon.cli", "key", "export", "--confdir", str(trail.parent / "conf"),
                          "--out", str(pub)], capture_output=True, text=True)
    assert out.returncode == 0 and pub.read_text().startswith("-----BEGIN PUBLIC KEY-----")
    cp = subprocess.run([sys.executable, "-m", "shield_addon.cli", "verify", "--dir", str(trail), "--key", str(pub),
                         "--confdir", str(tmp_path / "nowhere")], capture_output=True, text=True)
    assert cp.returncode == 0, cp.stdout


def test_an_edited_field_is_caught(trail: Path) -> None:
    rewrite_journal(trail, lambda rows: [{**r, "agent": "someone-else"} if r["seq"] == 17 else r for r in rows])
    cp = verify(trail)
    assert cp.returncode == 1 and cp.stdout.startswith("BROKEN: seq 17: edited")


def test_a_deleted_row_is_caught(trail: Path) -> None:
    rewrite_journal(trail, lambda rows: [r for r in rows if r["seq"] != 23])
    cp = verify(trail)
    assert cp.returncode == 1 and cp.stdout.startswith("BROKEN: seq 23: missing rows")


def test_two_swapped_rows_are_caught(trail: Path) -> None:
    def swap(rows):
        i = next(n for n, r in enumerate(rows) if r["seq"] == 12)
        rows[i], rows[i + 1] = rows[i + 1], rows[i]
        return rows

    rewrite_journal(trail, swap)
    cp = verify(trail)
    assert cp.returncode == 1 and cp.stdout.startswith("BROKEN: seq 12: missing rows")
    assert "seq 12: out of order" in cp.stdout


def test_a_truncated_tail_is_caught_by_the_last_checkpoint(trail: Path) -> None:
    rewrite_journal(trail, lambda rows: [r for r in rows if r["seq"] <= N - 3])
    (trail / "audit.duckdb").unlink()  # a careful editor cuts the copy too
    cp = verify(trail)
    assert cp.returncode == 1 and cp.stdout.startswith(f"BROKEN: seq {N}: truncated")


def test_a_wholly_rewritten_chain_is_caught_by_the_signed_checkpoints(trail: Path) -> None:
    def rechain(rows):
        prev, out = record.GENESIS, []
        for r in rows:
            r = {**r, "agent": "innocent" if r["seq"] == 5 else r["agent"], "prev_hash": prev}
            r["row_hash"] = record.row_hash(r)
            prev = r["row_hash"]
            out.append(r)
        return out

    rewrite_journal(trail, rechain)
    (trail / "audit.duckdb").unlink()  # ... and lets the proxy re-ingest a consistent copy
    store.ingest(trail)
    cp = verify(trail)
    # every hash and link is consistent again; only the checkpoint signed at seq 11 knows better
    assert cp.returncode == 1 and cp.stdout == "BROKEN: seq 11: rewritten: the signed checkpoint's row_hash differs from the chain's\n"


def test_a_forged_checkpoint_is_caught(trail: Path) -> None:
    log = trail / "checkpoints.log"
    lines = log.read_text().splitlines()
    cp = json.loads(lines[-1])
    cp["row_hash"] = "f" * 64  # moved to hide a rewrite, but the signature is the old one
    log.write_text("\n".join([*lines[:-1], json.dumps(cp)]) + "\n")
    out = verify(trail)
    assert out.returncode == 1 and f"seq {N}: forged checkpoint" in out.stdout


def test_a_checkpoint_signed_with_another_key_is_caught(trail: Path) -> None:
    rogue = Ed25519PrivateKey.generate()
    last = json.loads((trail / "checkpoints.log").read_text().splitlines()[-1])
    forged = checkpoints.sign(rogue, last["chain_id"], last["seq"], last["row_hash"], 0)
    with open(trail / "checkpoints.log", "a") as f:
        f.write(json.dumps(forged) + "\n")
    out = verify(trail)
    assert out.returncode == 1 and "forged checkpoint" in out.stdout


def test_a_removed_journal_segment_is_caught(trail: Path) -> None:
    segs = segments(trail / "journal")
    assert len(segs) >= 3
    first_missing = segs[1][0]
    segs[1][1].unlink()
    out = verify(trail)
    assert out.returncode == 1 and out.stdout.startswith(f"BROKEN: seq {first_missing}: missing rows")


def test_removed_checkpoints_leave_the_chain_unproven(trail: Path) -> None:
    (trail / "checkpoints.log").unlink()
    out = verify(trail)
    assert out.returncode == 1 and "unsigned: no valid signed checkpoint" in out.stdout


def test_a_row_edited_only_in_duckdb_is_caught(trail: Path) -> None:
    con = duckdb.connect(str(trail / "audit.duckdb"))
    con.execute("UPDATE events SET agent = 'nobody' WHERE seq = 30")
    con.close()
    out = verify(trail)
    assert out.returncode == 1 and out.stdout.startswith("BROKEN: seq 30: edited in audit.duckdb")


def test_a_row_added_only_in_duckdb_is_caught(trail: Path) -> None:
    con = duckdb.connect(str(trail / "audit.duckdb"))
    con.execute("INSERT INTO events SELECT * REPLACE (seq + 1000 AS seq) FROM events WHERE seq = 1")
    con.close()
    out = verify(trail)
    assert out.returncode == 1 and "journal and audit.duckdb disagree" in out.stdout


def test_a_flow_summary_edited_in_duckdb_is_caught(trail: Path) -> None:
    """The timeline reads `flows`: rewriting a flow there (a denial made to look approved) must
    not pass for the record."""
    con = duckdb.connect(str(trail / "audit.duckdb"))
    con.execute("UPDATE flows SET decision = 'approved', reviewer = 'ann' WHERE flow_id = 'f12'")
    con.close()
    out = verify(trail)
    assert out.returncode == 1 and out.stdout.startswith("BROKEN: seq 13: flows disagree with events"), out.stdout


def test_a_flow_hidden_from_the_prefix_lookup_is_caught(trail: Path) -> None:
    """`show` by an id prefix looks in flow_heads: a flow removed there would hide from it."""
    con = duckdb.connect(str(trail / "audit.duckdb"))
    con.execute("DELETE FROM flow_heads WHERE flow_id = 'f12'")
    con.close()
    out = verify(trail)
    assert out.returncode == 1 and "flow_heads disagree with flows: flow f12" in out.stdout, out.stdout


def test_the_chain_checks_in_sql_alone(trail: Path) -> None:
    """The README's query: the same hashes recomputed by DuckDB, no Python involved."""
    con = duckdb.connect(str(trail / "audit.duckdb"), read_only=True)
    rows = con.execute(store.chain_check_sql()).fetchall()
    assert len(rows) == N and all(hash_ok and link_ok for _, hash_ok, link_ok in rows)
    con.close()
    con = duckdb.connect(str(trail / "audit.duckdb"))
    con.execute("UPDATE events SET path = '/x' WHERE seq = 7")
    bad = con.execute(f"SELECT seq FROM ({store.chain_check_sql()}) WHERE NOT hash_ok").fetchall()
    assert bad == [(7,)]


def test_checkpoints_reach_the_duckdb_table(trail: Path) -> None:
    con = duckdb.connect(str(trail / "audit.duckdb"), read_only=True)
    seqs = [r[0] for r in con.execute("SELECT seq FROM checkpoints ORDER BY seq").fetchall()]
    assert seqs == [1, 11, 21, 31, N]


def test_the_signing_key_is_private_and_outside_the_audit_dir(trail: Path) -> None:
    key = trail.parent / "conf" / checkpoints.KEY_FILE
    assert key.stat().st_mode & 0o777 == 0o600
    assert not list(trail.rglob("*.key"))


# ---------------------------------------------------------------- a trail from the previous release

RELEASE_TRAIL = Path(__file__).resolve().parents[1] / "fixtures" / "release-trail"
CHAIN_FIELDS = ("seq", "chain_id", "prev_hash", "row_hash")


def release_lines() -> list[bytes]:
    [(_, seg)] = segments(RELEASE_TRAIL / "audit" / "journal")
    return seg.read_bytes().splitlines(keepends=True)


def test_a_trail_written_by_the_previous_release_verifies(tmp_path: Path) -> None:
    """tests/fixtures/release-trail was written by a real mitmdump running the release before
    the record package: it must verify as it is, and once ingested into audit.duckdb too."""
    audit = tmp_path / "audit"
    shutil.copytree(RELEASE_TRAIL / "audit", audit)
    key = str(RELEASE_TRAIL / "public-key.pem")
    cp = verify(audit, "--key", key)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert f"OK: {len(release_lines())} events" in cp.stdout and "2 signed checkpoint(s)" in cp.stdout
    store.ingest(audit)
    cp = verify(audit, "--key", key)
    assert cp.returncode == 0, cp.stdout + cp.stderr


def test_the_previous_release_rows_are_sealed_again_byte_for_byte() -> None:
    """Every stage the proxy writes, sealed by today's code from the row's own columns, gives
    the same row_hash and the same journal line, byte for byte."""
    prev, seen = record.GENESIS, set()
    for line in release_lines():
        row = json.loads(line)
        event = {k: v for k, v in row.items() if k not in CHAIN_FIELDS}
        sealed = record.seal(event, row["seq"], row["chain_id"], prev)
        assert sealed["row_hash"] == row["row_hash"] == record.row_hash(row), row["seq"]
        assert journal_line(sealed) + b"\n" == line, row["seq"]
        prev = row["row_hash"]
        seen.add((row["stage"], row["decision"]))
    assert {s for s, _ in seen} == {"ruleset", "request", "decision", "response", "error", "message"}
    assert {d for s, d in seen if s == "request"} >= {"allowed", "blocked", "approved", None}  # None: held
    assert {d for s, d in seen if s == "decision"} == {"approved", "denied"}
