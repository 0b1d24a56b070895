"""`shield verify --fleet`: every chain in the fleet database proven whole, or the first bad
seq of each named with its proxy.

Per chain, the rows are streamed in seq order (a server-side cursor, never a whole chain in
memory) through verify.check_rows, the one chain walker: each hash recomputed from `line`, the
journal's bytes. Beside it each row's typed columns (what the views filter on) must be what
schema.pg_row makes of that line, so an UPDATE of a typed column is caught even when `line`
is left alone. The chain's signed checkpoints (table `checkpoints`, checkpoints.log lines)
must verify with one of the given public keys and agree with the chain.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import psycopg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from shield_addon import checkpoints
from shield_addon.fleet import schema
from shield_addon.fleet.reads import journal_time
from shield_addon.verify import Problem, Report, check_rows, compare_signed

BATCH = 5000
_TIMESTAMPS = frozenset(name for name, typ in schema.TYPED if typ == "timestamp")

# Every chain id: the proxies registered, and (a skip scan of the primary key, not a read of
# every row) any chain with rows but no proxy.
CHAINS_SQL = """
WITH RECURSIVE c AS (
    SELECT min(chain_id) AS id FROM chain_rows
    UNION ALL SELECT (SELECT min(chain_id) FROM chain_rows WHERE chain_id > c.id) FROM c WHERE c.id IS NOT NULL
)
SELECT id, (SELECT name FROM proxies WHERE chain_id = id) FROM (
    SELECT id FROM c WHERE id IS NOT NULL UNION SELECT chain_id FROM proxies UNION SELECT chain_id FROM checkpoints
) ids ORDER BY 2, 1"""
ROWS_SQL = f"SELECT {', '.join(schema.TYPED_NAMES)}, line FROM chain_rows WHERE chain_id = %s ORDER BY seq"


@dataclass
class ChainReport:
    chain_id: str
    proxy: str | None
    report: Report

    @property
    def first(self) -> Problem | None:
        return self.report.problems[0] if self.report.problems else None


@dataclass
class FleetReport:
    chains: list[ChainReport] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.report.ok for c in self.chains)

    @property
    def events(self) -> int:
        return sum(c.report.events for c in self.chains)


def verify(con: psycopg.Connection, publics: Sequence[Ed25519PublicKey],
           progress: Callable[[int], None] | None = None) -> FleetReport:
    out = FleetReport()
    done = 0
    for chain_id, proxy in con.execute(CHAINS_SQL).fetchall():
        def step(n: int, before: int = done) -> None:
            if progress:
                progress(before + n)
        report = verify_chain(con, chain_id, publics, step)
        done += report.events
        out.chains.append(ChainReport(chain_id, proxy, report))
    return out


def verify_chain(con: psycopg.Connection, chain_id: str, publics: Sequence[Ed25519PublicKey],
                 progress: Callable[[int], None] | None = None) -> Report:
    report = Report(chain_id=chain_id)
    signed = signed_checkpoints(con, chain_id, publics, report)
    found = check_rows(_rows(con, chain_id, report), report, signed, progress)
    compare_signed(signed, found, report, chain_id)
    if report.events and not signed:
        report.problems.append(Problem(None, "unsigned", "no valid signed checkpoint: the chain cannot be proven whole"))
    report.problems.sort(key=lambda p: (p.seq is None, p.seq or 0))
    return report


def _rows(con: psycopg.Connection, chain_id: str, report: Report) -> Iterator[dict[str, Any]]:
    """The chain's rows as the journal wrote them (parsed `line`), in seq order; a typed
    column that is not what its line says, or a line that is not a row, is a problem."""
    with con.transaction(), con.cursor(name="shield_verify") as cur:
        cur.itersize = BATCH
        cur.execute(ROWS_SQL, (chain_id,))
        for typed in cur:
            line = typed[-1]
            try:
                row = orjson.loads(line)
            except orjson.JSONDecodeError:
                row = None
            if not isinstance(row, dict):
                report.problems.append(Problem(typed[0], "unreadable line", "chain_rows.line is not a journal row"))
                continue
            if bad := typed_mismatch(typed, row, line):
                report.problems.append(Problem(typed[0], "edited in PostgreSQL",
                                               f"column {bad} is not what the row's line says"))
            yield row


def typed_mismatch(typed: Sequence[Any], row: dict[str, Any], line: str) -> str | None:
    """The first typed column whose value differs from what schema.pg_row makes of the line."""
    expected = schema.pg_row(row, line)
    for name, have, want in zip(schema.TYPED_NAMES, typed, expected):
        if name in _TIMESTAMPS and isinstance(want, str):
            want = journal_time(want)
        if have != want:
            return name
    return None


def signed_checkpoints(con: psycopg.Connection, chain_id: str, publics: Sequence[Ed25519PublicKey],
                       report: Report) -> dict[int, str]:
    """Signed (seq -> row_hash) pairs of the chain; a line that is not a checkpoint of this
    chain signed by one of `publics` is a problem (verify.load_checkpoints, for a table)."""
    keys = {checkpoints.key_id(k): k for k in publics}
    signed: dict[int, str] = {}
    rows = con.execute("SELECT seq, line FROM checkpoints WHERE chain_id = %s ORDER BY seq, line", (chain_id,))
    for seq, line in rows.fetchall():
        try:
            cp = orjson.loads(line)
        except orjson.JSONDecodeError:
            cp = None
        if not isinstance(cp, dict) or not isinstance(cp.get("seq"), int):
            report.problems.append(Problem(None, "bad checkpoint", f"the checkpoint row at seq {seq} is not a checkpoint"))
            continue
        key = keys.get(str(cp.get("key_id")))
        if key is None or not checkpoints.signature_ok(cp, key) or cp.get("chain_id") != chain_id or cp["seq"] != seq:
            known = ", ".join(keys) or "none"
            report.problems.append(Problem(cp["seq"], "forged checkpoint",
                                           f"does not verify with the given key(s) ({known}) for this chain: forged, or "
                                           "signed by a key not passed with --key"))
            continue
        report.checkpoints += 1
        signed[cp["seq"]] = str(cp.get("row_hash"))
        report.signed_seq = max(report.signed_seq, cp["seq"])
    return signed

