"""The `events` table's columns and the frozen canonical form every row hash is taken over.

Pure: no mitmproxy, no I/O.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

# The `events` table, in order. Changing this list changes every row hash: don't.
COLUMNS: tuple[tuple[str, str], ...] = (
    ("seq", "BIGINT"),
    ("chain_id", "VARCHAR"),
    ("prev_hash", "VARCHAR"),
    ("row_hash", "VARCHAR"),
    ("ts", "TIMESTAMP"),
    ("stage", "VARCHAR"),
    ("flow_id", "VARCHAR"),
    ("agent", "VARCHAR"),
    ("client_ip", "VARCHAR"),
    ("method", "VARCHAR"),
    ("scheme", "VARCHAR"),
    ("host", "VARCHAR"),
    ("port", "INTEGER"),
    ("path", "VARCHAR"),
    ("url", "VARCHAR"),
    ("request_headers", "JSON"),
    ("request_body", "VARCHAR"),
    ("request_body_size", "BIGINT"),
    ("request_sha256", "VARCHAR"),
    ("service", "VARCHAR"),
    ("action_type", "VARCHAR"),
    ("operation", "VARCHAR"),
    ("resource_type", "VARCHAR"),
    ("namespace", "VARCHAR"),
    ("resource_name", "VARCHAR"),
    ("tables", "VARCHAR[]"),
    ("rule_id", "VARCHAR"),
    ("verdict", "VARCHAR"),
    ("matched_rules", "VARCHAR[]"),
    ("mode", "VARCHAR"),
    ("ruleset_sha256", "VARCHAR"),
    ("severity", "VARCHAR"),
    ("decision", "VARCHAR"),
    ("reviewer", "VARCHAR"),
    ("decided_at", "TIMESTAMP"),
    ("reviewer_comment", "VARCHAR"),
    ("edited", "BOOLEAN"),
    ("forwarded_request", "JSON"),
    ("status_code", "INTEGER"),
    ("response_headers", "JSON"),
    ("response_body", "VARCHAR"),
    ("response_body_size", "BIGINT"),
    ("response_sha256", "VARCHAR"),
    ("outcome", "VARCHAR"),
    ("error", "VARCHAR"),
    ("duration_ms", "DOUBLE"),
    # retry-mode holds: one hold_id for the held attempt, its retries and its decision;
    # hold_key is the keyed digest of what an approval is bound to (agent, method, URL, body)
    ("hold_id", "VARCHAR"),
    ("hold_key", "VARCHAR"),
    # --- added after the first release: in the canonical form only when set (see canonical)
    # every action the request carries, as judged: [{service, action_type, operation, ...}]
    ("actions", "JSON"),
    # a hold's dry run: what the server said the request would do (rules with `preview: true`)
    ("preview", "VARCHAR"),
)
COLUMN_NAMES = tuple(name for name, _ in COLUMNS)
_CANONICAL_NAMES = tuple(name for name in COLUMN_NAMES if name != "row_hash")
# Columns from here on were added to a released table. A NULL one adds nothing to the
# canonical form, so rows written before it existed keep their hashes and old trails verify.
LATER_COLUMNS = frozenset(COLUMN_NAMES[COLUMN_NAMES.index("actions"):])
CANONICAL_VERSION = 1
COLUMN_SET = frozenset(COLUMN_NAMES)


class UnknownColumn(KeyError):
    """An event names a column the table does not have: a misspelling would become a NULL."""


def check_columns(event: Mapping[str, Any]) -> None:
    if not COLUMN_SET.issuperset(event):
        raise UnknownColumn(f"not a column of events: {sorted(set(event) - COLUMN_SET)}")


def canonical(event: Mapping[str, Any]) -> bytes:
    """Version 1: every column but row_hash, in COLUMNS order, each as `<utf-8 length>:<text>`,
    NULL as `-` (nothing for LATER_COLUMNS). Lists are compact JSON, booleans true/false,
    numbers as Python writes them."""
    get = event.get
    parts = []
    add = parts.append
    for name in _CANONICAL_NAMES:
        v = get(name)
        if v is None:
            if name not in LATER_COLUMNS:
                add("-")
        else:
            text = v if type(v) is str else _text(v)
            add(f"{len(text) if text.isascii() else len(text.encode())}:{text}")
    return "".join(parts).encode()


def _text(v: Any) -> str | None:
    if v is None:
        return None
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, tuple)):
        text = json.dumps(list(v), separators=(",", ":"), ensure_ascii=False)
        if "\\u" not in text:
            return text
        return _UNICODE_ESCAPE.sub(lambda m: m.group(1) + "\\u" + m.group(2).upper(), text)
    return str(v)


# DuckDB's to_json writes \u001B where Python writes \u001b; the canonical form takes
# DuckDB's, so a chain checks in SQL alone. (An escaped backslash before "u" is left alone.)
_UNICODE_ESCAPE = re.compile(r"(?<!\\)((?:\\\\)*)\\u([0-9a-f]{4})")
