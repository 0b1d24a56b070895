"""One glob semantics everywhere (rules and CLI filters): fnmatch syntax, case-insensitive,
matching the whole value. Host names, namespaces and table names are compared without case."""

from __future__ import annotations

import fnmatch
import re


def compile_glob(pattern: str) -> re.Pattern[str]:
    """ValueError when the pattern cannot be a glob (unbalanced brackets)."""
    if pattern.count("[") != pattern.count("]"):
        raise ValueError(f"bad glob {pattern!r}: unbalanced [ ]")
    try:
        return re.compile(fnmatch.translate(pattern), re.IGNORECASE | re.DOTALL)
    except re.error as e:
        raise ValueError(f"bad glob {pattern!r}: {e}") from e


def glob_sql(column: str) -> str:
    """The SQL condition for one parameter that holds a glob, with the same semantics:
    DuckDB's GLOB is case-sensitive, so both sides are lowered."""
    return f"lower({column}) GLOB lower(?)"
