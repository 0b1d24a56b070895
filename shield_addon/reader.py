"""The one API every data command uses: timeline, show, sql, export, report, verify.

`Reader(audit_dir)` is to the trail what sqlite-utils' `Database` is to a file: the CLI,
scripts and tests ask it questions and get rows back; they never build SQL or hold a raw
connection. The session (audit.duckdb attached read-only plus the journal's newest lines)
is opened on the first question, so `verify` on a trail without a store opens none.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shield_addon import queries, session
from shield_addon.core.model import AuditDir
from shield_addon.duck import duckdb
from shield_addon.queries import NO_FILTER, Filters, ReaderError
from shield_addon.schema import VIEWS

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from shield_addon.verify import Report

__all__ = ["EventSelection", "Filters", "Flow", "FlowSet", "Reader", "ReaderError", "Rows"]


@dataclass(frozen=True)
class Rows:
    columns: list[str]
    rows: list[tuple[Any, ...]]

    def dicts(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, r)) for r in self.rows]


@dataclass(frozen=True)
class Flow:
    """Every event of one flow, in order, and (hash_ok, link_ok) of each by seq."""

    events: list[dict[str, Any]]
    chain: dict[int, tuple[bool, bool]] = field(default_factory=dict)


READ_ONLY = {duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN}


class Reader:
    def __init__(self, root: str | Path, wait: float = session.LOCK_WAIT):
        self.dir = AuditDir(Path(root).expanduser())
        self.wait = wait
        self._session: session.Session | None = None

    def _ask(self, *views: str) -> duckdb.DuckDBPyConnection:
        """The session, opened on the first question, with the views this one reads."""
        if self._session is None:
            self._session = session.open_session(self.dir.root, self.wait, views)
        return self._session.add_views(views)

    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        """The session with every view: for questions in the user's own SQL."""
        return self._ask(*VIEWS, "flows")

    def close(self) -> None:
        if self._session is not None:
            self._session.con.close()
            self._session = None

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def timeline(self, filters: Filters = NO_FILTER, limit: int | None = None) -> Rows:
        """One row per flow, oldest first; with `limit`, the newest N of them."""
        where, params = filters.where()
        cur = self._ask("timeline").execute(queries.timeline_sql(where, bool(limit)), [*params, *([limit] if limit else [])])
        return Rows([d[0] for d in cur.description], cur.fetchall())

    def flow(self, prefix: str) -> Flow:
        """The flow whose id is `prefix` or, if none is, the one flow whose id starts with it."""
        con = self._ask()
        found = self._session.find_flows(prefix)  # type: ignore[union-attr]  # _ask opened it
        if not found:
            raise ReaderError(f"no flow with id {prefix!r}")
        if len(found) > 1:
            raise ReaderError(f"{prefix!r} is ambiguous: {', '.join(f[0] for f in found[:5])}")
        flow_id, first_seq, last_seq = found[0]
        events = session.rows_as_dicts(con.execute(queries.FLOW_EVENTS, [first_seq, last_seq, flow_id]))
        return Flow(events, session.chain_status(con, [e["seq"] for e in events]))

    def query(self, sql: str) -> Rows:
        """Read-only SQL over the tables and views: anything but SELECT, WITH or EXPLAIN is refused."""
        try:
            statements = duckdb.extract_statements(sql)
        except duckdb.Error as e:
            raise ReaderError(f"SQL: {e}") from None
        bad = [s.type.name for s in statements if s.type not in READ_ONLY]
        if bad or not statements:
            raise ReaderError(f"shield sql runs reads only (SELECT, WITH, EXPLAIN); refused: {', '.join(bad) or 'empty'}")
        try:
            cur = self.con.execute(sql)
        except duckdb.Error as e:
            raise ReaderError(f"SQL: {e}") from None
        return Rows([d[0] for d in cur.description], cur.fetchall())

    def recorded_requests(self, filters: Filters = NO_FILTER) -> list[dict[str, Any]]:
        """The `request` events of the flows the filters select, in order (for `rules replay`)."""
        where, params = filters.where()
        return session.rows_as_dicts(self._ask("timeline").execute(queries.recorded_requests_sql(where), params))

    def flows(self, filters: Filters = NO_FILTER) -> FlowSet:
        """The flows the filters select, for counts and pages (the report)."""
        return FlowSet(self._ask("timeline", "holds"), filters)

    def events(self, filters: Filters = NO_FILTER) -> EventSelection:
        """The events of the flows the filters select; every event without filters (exports)."""
        return EventSelection(self._ask("timeline"), filters)

    def export(self, fmt: str, out: Path, filters: Filters = NO_FILTER,
               described: dict[str, Any] | None = None) -> dict[str, Any]:
        """Write an export and its manifest (`described`: the filters as the user gave them); the manifest."""
        from shield_addon import export

        return export.export(self.events(filters), fmt, out, self.dir, described if described is not None else filters.given())

    def report(self, filters: Filters = NO_FILTER, **kw: Any) -> str:
        """The flows the filters select as one self-contained HTML page (report.render_report's options)."""
        from shield_addon import report

        return report.render_report(self.flows(filters), **kw)

    def verify(self, public: Ed25519PublicKey, progress: Callable[[int], None] | None = None) -> Report:
        """Every row hash, link and signed checkpoint, and audit.duckdb against the journal."""
        from shield_addon import verify

        return verify.verify(self.dir.root, public, progress, reader=self)

    def store_tables(self) -> set[str]:
        """The tables of audit.duckdb; empty when there is no such file."""
        return session.table_names(self._ask(), "audit") if self.dir.db.exists() else set()


class FlowSet:
    """Counts and pages over the flows a filter selects (the filtered timeline)."""

    def __init__(self, con: duckdb.DuckDBPyConnection, filters: Filters):
        self.con, self.filters = con, filters
        self.where, self.params = filters.where()

    def _ask(self, sql: str, before: Sequence[Any] = (), after: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        # `sql` holds `{flows}` once; its placeholders sit between `before` and `after`.
        return self.con.execute(sql.format(flows=f"(SELECT * FROM timeline{self.where})"),
                                [*before, *self.params, *after]).fetchall()

    def summary(self) -> tuple[Any, ...]:
        """(flows, held, approved, refused, lapsed, held without a decision, first ts, last ts)."""
        return self._ask(queries.REPORT_SUMMARY)[0]

    def by_decision(self) -> list[tuple[str, int]]:
        return self._ask(queries.REPORT_BY_DECISION)  # type: ignore[return-value]

    def by(self, group: str, limit: int) -> list[tuple[Any, ...]]:
        """Per agent or rule: (key, flows, held, approved, refused, lapsed, groups in all)."""
        return self._ask(queries.report_by_sql(group), after=[limit])

    def per_bucket(self, step: int) -> list[tuple[int, int, int]]:
        """(floor(epoch / step), flows, held) for every bucket with a flow."""
        return self._ask(queries.REPORT_BUCKETS, before=[step])  # type: ignore[return-value]

    def page(self, limit: int) -> list[tuple[Any, ...]]:
        """The first `limit` flows, in order, with the report's columns."""
        return self._ask(queries.REPORT_FLOWS, after=[limit])

    def holds(self, limit: int) -> list[tuple[Any, ...]]:
        return self.con.execute(queries.report_holds_sql(self.where), [*self.params, limit]).fetchall()


class EventSelection:
    """The events an export writes, as a view: nothing is copied until it is written."""

    def __init__(self, con: duckdb.DuckDBPyConnection, filters: Filters):
        self.con = con
        where, params = filters.where()
        if where:  # only the flow ids are materialised, never the events
            con.execute(queries.export_flows_sql(where), params)
        con.execute(queries.export_rows_sql(bool(where)))

    def range(self) -> tuple[int | None, int | None, int, list[str]]:
        """(lowest seq, highest seq, events, chain ids)."""
        seq_min, seq_max, count, chains = self.con.execute(queries.EXPORT_RANGE).fetchone()
        return seq_min, seq_max, count, sorted(c for c in chains or [] if c)

    def chain_id(self) -> str | None:
        return self.con.execute(queries.EXPORT_CHAIN).fetchone()[0]

    def events(self) -> Iterator[dict[str, Any]]:
        return _dicts(self.con.execute(queries.EXPORT_EVENTS))

    def flows(self) -> Iterator[dict[str, Any]]:
        """One row per exported flow: the timeline's columns, the request's and the decision's."""
        return _dicts(self.con.execute(queries.EXPORT_FLOWS))

    def write_parquet(self, out: Path, chain: str) -> None:
        # Bounded memory: by default DuckDB may take 80 % of RAM and buffers 524,288 rows per
        # open partition.
        from shield_addon import store  # the writer's module: only an export needs its memory_limit

        self.con.execute(f"SET memory_limit = '{store.memory_limit(0.5, 4 << 30)}'")
        self.con.execute("SET partitioned_write_flush_threshold = 100000")
        self.con.execute(queries.export_parquet_sql(out, chain, store.sql_str))


def _dicts(cur: duckdb.DuckDBPyConnection, size: int = 10_000) -> Iterator[dict[str, Any]]:
    names = [d[0] for d in cur.description]
    while rows := cur.fetchmany(size):
        for row in rows:
            yield dict(zip(names, row))
