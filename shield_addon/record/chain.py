"""The hash chain: each row's place (seq), its link to the previous row and its own hash.

Pure: no mitmproxy, no I/O.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

from shield_addon.record.schema import COLUMN_NAMES, LATER_COLUMNS, canonical, check_columns

GENESIS = "0" * 64


def row_hash(event: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical(event)).hexdigest()


def seal(event: dict[str, Any], seq: int, chain_id: str, prev_hash: str) -> dict[str, Any]:
    """Give an event its place in the chain. Returns the row, columns in order (a NULL of the
    LATER_COLUMNS left out).
    An event that names a column the table does not have is refused (UnknownColumn)."""
    check_columns(event)
    get = event.get
    row = {name: v if v is None or type(v) is str and v.isascii() else _clean(v)
           for name in COLUMN_NAMES for v in (get(name),)}
    for name in LATER_COLUMNS:  # absent, not null: rows of before these columns keep their bytes
        if row[name] is None:
            del row[name]
    row.update(seq=seq, chain_id=chain_id, prev_hash=prev_hash, row_hash=None)
    row["row_hash"] = row_hash(row)
    return row


def _clean(v: Any) -> Any:
    """Lone surrogates (undecodable header bytes) cannot be stored as UTF-8: make them U+FFFD."""
    if isinstance(v, str) and not v.isascii():
        return v.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    return v


def check_chain(rows: Iterable[Mapping[str, Any]], prev_hash: str = GENESIS, first_seq: int = 1):
    """Yield (seq, problem) for each broken row: gap, bad link or bad hash."""
    expect_seq = first_seq
    for row in rows:
        if row["seq"] != expect_seq:
            yield row["seq"], f"seq gap: expected {expect_seq}"
        if row["prev_hash"] != prev_hash:
            yield row["seq"], "prev_hash does not link to the previous row"
        if row_hash(row) != row["row_hash"]:
            yield row["seq"], "row_hash does not match the row's content"
        prev_hash, expect_seq = row["row_hash"], row["seq"] + 1

