"""Audit events: the column list and canonical form (`schema`), the hash chain (`chain`),
redaction (`redaction`) and safe text (`text`). Pure: no mitmproxy, no I/O. Everything that
is written anywhere passes redaction first.
"""

from shield_addon.record.chain import GENESIS, check_chain, row_hash, seal
from shield_addon.record.redaction import (
    HEADERS_LIMIT,
    SECRET_HEADERS,
    VALUE_LIMIT,
    Redactions,
    Redactor,
    cut,
    headers_json,
    redact_url,
    sha256,
    stored_url,
)
from shield_addon.record.schema import (
    CANONICAL_VERSION,
    COLUMN_NAMES,
    COLUMN_SET,
    COLUMNS,
    LATER_COLUMNS,
    UnknownColumn,
    canonical,
    check_columns,
)
from shield_addon.record.text import safe_text, utc_text

__all__ = [
    "CANONICAL_VERSION", "COLUMNS", "COLUMN_NAMES", "COLUMN_SET", "GENESIS", "HEADERS_LIMIT", "LATER_COLUMNS", "SECRET_HEADERS",
    "VALUE_LIMIT", "Redactions", "Redactor", "UnknownColumn", "canonical", "check_chain", "check_columns", "cut", "headers_json",
    "redact_url", "row_hash", "safe_text", "seal", "sha256", "stored_url", "utc_text",
]
