"""DuckDB for the commands that only read: the engine, without its Python wrapper's start-up.

`import duckdb` runs some 75 ms of Python before a `shield` command can ask anything (the
relational and expression APIs, Arrow hooks, importlib.metadata for its own version: 113 ms
against 38 ms for the engine alone, measured in docs/performance.md). The engine is the
`_duckdb` extension module that the package re-exports (DuckDB >= 1.4), and it has every
call the reader makes: connect, execute, fetch*, description, extract_statements,
StatementType and the exception classes, the very same objects as `duckdb.*`. Where DuckDB
ships its engine inside the package (before 1.4), this is the package.
"""

from __future__ import annotations

try:
    import _duckdb as duckdb

    if not all(hasattr(duckdb, name) for name in ("connect", "Error", "StatementType")):
        raise ImportError("an engine module of another shape")  # a DuckDB that moved things: take the package
except ImportError:  # DuckDB < 1.4: the engine is duckdb.duckdb, loaded by the package
    import duckdb  # type: ignore[no-redef]

__all__ = ["duckdb"]
