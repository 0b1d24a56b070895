"""`shield verify`: is the trail whole? Every row hash, every link, every signed
checkpoint, and audit.duckdb against the journal. The first problem found is named by
its seq and the kind of damage."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from shield_addon import checkpoints, journal, queries, record, store
from shield_addon.core.model import AuditDir
from shield_addon.reader import Reader


@dataclass(frozen=True)
class Problem:
    seq: int | None
    kind: str
    detail: str

    def __str__(self) -> str:
        where = f"seq {self.seq}" if self.seq is not None else "store"
        return f"{where}: {self.kind}: {self.detail}"


@dataclass
class Report:
    events: int = 0
    last_seq: int = 0
    chain_id: str | None = None
    checkpoints: int = 0
    signed_seq: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def unsigned(self) -> int:
        """Events after the newest checkpoint: normal after a crash, signed at the next one."""
        return max(0, self.last_seq - self.signed_seq)


def check_rows(rows: Iterable[Mapping[str, Any]], report: Report, wanted: Mapping[int, str],
               progress: Callable[[int], None] | None = None) -> dict[int, str]:
    """Walk the chain once. Returns the row hashes at the seqs in `wanted` (checkpoints)."""
    prev_hash, expect = record.GENESIS, 1
    found: dict[int, str] = {}
    for row in rows:
        seq = row["seq"]
        report.events += 1
        if report.chain_id is None:
            report.chain_id = row.get("chain_id")
        elif row.get("chain_id") != report.chain_id:
            report.problems.append(Problem(seq, "foreign row", f"chain_id {row.get('chain_id')!r} is not {report.chain_id!r}"))
        if seq > expect:
            missing = f"{expect}" if seq == expect + 1 else f"{expect}..{seq - 1}"
            report.problems.append(Problem(expect, "missing rows", f"seq {missing} absent (deleted rows or a removed segment)"))
        elif seq < expect:
            report.problems.append(Problem(seq, "out of order", f"seq {seq} comes after seq {expect - 1} (rows reordered)"))
        if record.row_hash(row) != row.get("row_hash"):
            report.problems.append(Problem(seq, "edited", "row_hash does not match the row's content"))
        elif row.get("prev_hash") != prev_hash and seq >= expect:
            report.problems.append(Problem(seq, "broken link", "prev_hash is not the previous row's row_hash"))
        if seq in wanted:
            found[seq] = row.get("row_hash") or ""
        prev_hash, expect = row.get("row_hash") or "", max(expect, seq + 1)
        report.last_seq = max(report.last_seq, seq)
        if progress and report.events % 10_000 == 0:
            progress(report.events)
    return found


def load_checkpoints(log: Path, public: Ed25519PublicKey, report: Report) -> dict[int, str]:
    """Signed (seq -> row_hash) pairs; bad ones become problems."""
    signed: dict[int, str] = {}
    kid = checkpoints.key_id(public)
    for line, cp in checkpoints.read_log(log):
        if cp is None or not isinstance(cp.get("seq"), int):
            report.problems.append(Problem(None, "bad checkpoint", f"{log.name} line {line} is not a checkpoint"))
            continue
        if cp.get("key_id") != kid or not checkpoints.signature_ok(cp, public):
            report.problems.append(Problem(cp["seq"], "forged checkpoint",
                                           f"{log.name} line {line}: signature does not verify with key {kid}"))
            continue
        report.checkpoints += 1
        signed[cp["seq"]] = str(cp.get("row_hash"))
        report.signed_seq = max(report.signed_seq, cp["seq"])
        if report.chain_id is None:
            report.chain_id = cp.get("chain_id")
    return signed


def compare_signed(signed: Mapping[int, str], found: Mapping[int, str], report: Report, chain_id: str | None) -> None:
    for seq, h in sorted(signed.items()):
        if seq > report.last_seq:
            report.problems.append(Problem(seq, "truncated",
                                           f"a checkpoint signs seq {seq} but the chain ends at seq {report.last_seq}"))
            break
        if found.get(seq) != h:
            report.problems.append(Problem(seq, "rewritten", "the signed checkpoint's row_hash differs from the chain's"))
            break


def compare_db(reader: Reader, report: Report) -> None:
    """audit.duckdb must hold journal rows only, unchanged: recompute its hashes in SQL
    and match them against the journal."""
    tables = reader.store_tables()
    if "events" not in tables:
        return
    con = reader.con
    if bad := con.execute(queries.FIRST_EDITED_IN_STORE).fetchone():
        report.problems.append(Problem(bad[0], "edited in audit.duckdb", "row_hash does not match the row's content"))
    if "flows" in tables and (bad := con.execute(queries.FLOWS_DISAGREE).fetchone()):
        # `flows` is derived from `events` at ingest: it must still be exactly what they fold
        # to, or a timeline read from it could tell a different story than the chained rows.
        report.problems.append(Problem(bad[1], "flows disagree with events",
                                       f"flow {bad[0]}: its row in audit.duckdb's flows is not what its events say"))
    if "flow_heads" in tables and (bad := con.execute(queries.HEADS_DISAGREE).fetchone()):
        # Not evidence, but `show` by an id prefix looks there: a flow missing from it would hide.
        report.problems.append(Problem(None, "flow_heads disagree with flows",
                                       f"flow {bad[0]} is in one and not the other (or under another head)"))
    files = journal.segments(reader.dir.journal)
    if not files:
        return
    con.execute(queries.journal_hashes_sql(store.read_journal_sql([p for _, p in files])), [0, 2**62])
    diff = con.execute(queries.JOURNAL_DISAGREES).fetchone()
    if diff:
        what = "is not in the journal" if diff[1] else "differs from the journal's row"
        report.problems.append(Problem(diff[0], "journal and audit.duckdb disagree", f"the audit.duckdb row {what}"))


def verify(audit_dir: Path, public: Ed25519PublicKey, progress: Callable[[int], None] | None = None,
           reader: Reader | None = None) -> Report:
    """The whole check; `reader`: a session on `audit_dir` to compare audit.duckdb through."""
    layout = AuditDir(audit_dir)
    report = Report()
    signed = load_checkpoints(layout.checkpoints, public, report)
    def unreadable(path: Path, line: int) -> None:
        report.problems.append(Problem(None, "unreadable journal", f"{path.name} line {line} is not a journal row"))

    rows = journal.read_rows(layout.journal, on_bad=unreadable)
    found = check_rows(rows, report, signed, progress)
    compare_signed(signed, found, report, report.chain_id)
    if report.events and not signed:
        report.problems.append(Problem(None, "unsigned", "no valid signed checkpoint: the chain cannot be proven whole"))
    if layout.db.exists():
        if reader is not None:
            compare_db(reader, report)
        else:
            with Reader(audit_dir) as own:
                compare_db(own, report)
    report.problems.sort(key=lambda p: (p.seq is None, p.seq or 0))
    return report
