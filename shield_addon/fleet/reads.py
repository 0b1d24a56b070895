"""The fleet's trail for analysts: `shield timeline | show | sql | report | export --fleet`
and `shield fleet status`, over the fleet database.

`FleetReader` answers the questions `reader.Reader` answers over audit.duckdb, with the same
filters and the same shapes (Rows, Flow, a FlowSet for the report, an event selection for the
export), plus each row's `proxy`. Never imports mitmproxy; values are always bound parameters.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import psycopg

from shield_addon import queries, record
from shield_addon.core.model import AuditDir
from shield_addon.fleet import db, schema, shown, views
from shield_addon.fleet.views import pg
from shield_addon.queries import NO_FILTER, Filters, ReaderError
from shield_addon.reader import Flow, Rows
from shield_addon.schema import HELD

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from shield_addon.fleet.proof import FleetReport

BATCH = 5000  # rows a server-side cursor fetches at a time: exports and verify never hold a whole chain
SHOW_MAX = 20  # ids listed when a prefix is ambiguous
NEWEST_WINDOW = timedelta(minutes=10)  # the first window `timeline --limit N` looks in

# What `shield sql --fleet` runs: reads only, judged by the first keyword (after comments)
# before PostgreSQL is asked, for a clear message; the READ ONLY transaction is the guarantee.
_READS = ("select", "with", "values", "table", "explain", "show")
_LEADING_NOISE = re.compile(r"(\s+|--[^\n]*(\n|$)|/\*.*?\*/)*", re.DOTALL)


class FleetReader:
    """The fleet database's trail, opened on the first question."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._con: psycopg.Connection | None = None

    @property
    def con(self) -> psycopg.Connection:
        if self._con is None:
            con = db.connect(self.url)
            try:
                con.execute("SET jit = off")  # compiling cost more than it saved on these folds (measured)
                ensure_schema(con)
            except BaseException:
                con.close()
                raise
            self._con = con
        return self._con

    def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None

    def __enter__(self) -> FleetReader:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> Rows:
        cur = self.con.execute(sql, params)  # type: ignore[arg-type] - our own SQL text, values bound
        return Rows([d.name for d in cur.description or []], cur.fetchall())

    # ------------------------------------------------------------ timeline, show

    def timeline(self, filters: Filters = NO_FILTER, limit: int | None = None) -> Rows:
        """One row per flow (per proxy), oldest first; with `limit` the newest N; `proxy` last."""
        if limit and filters.since is None and filters.flow is None:
            return self._newest(filters, limit)
        return self._rows(*views.timeline_sql(filters, limit))

    def _newest(self, filters: Filters, limit: int) -> Rows:
        """The newest `limit` flows without folding every flow: in a window back from the newest
        event, widened until it holds `limit` flows (any flow before it is older than all of
        them) or the whole trail."""
        newest, oldest = self.con.execute("SELECT max(ts), min(ts) FROM chain_rows").fetchone() or (None, None)
        window = NEWEST_WINDOW
        while newest is not None and newest - window > oldest:
            found = self._rows(*views.timeline_sql(replace(filters, since=newest - window), limit))
            if len(found.rows) >= limit:
                return found
            window *= 4
        return self._rows(*views.timeline_sql(filters, limit))

    def flow(self, prefix: str) -> Flow:
        """The flow whose id is `prefix` or, if none is, the one flow whose id starts with it."""
        found = self.con.execute("SELECT DISTINCT chain_id, flow_id FROM chain_rows WHERE flow_id = %s",
                                 (prefix,)).fetchall()
        if not found:
            found = self.con.execute(
                "SELECT DISTINCT chain_id, flow_id FROM chain_rows WHERE starts_with(flow_id, %s) "
                "ORDER BY flow_id LIMIT %s", (prefix, SHOW_MAX)).fetchall()
        if not found:
            raise ReaderError(f"no flow with id {prefix!r} in the fleet")
        if len(found) > 1:
            raise ReaderError(f"{prefix!r} is ambiguous: {', '.join(sorted({f[1] for f in found})[:5])}")
        chain_id, flow_id = found[0]
        rows = self.con.execute(
            "SELECT r.line, p.name FROM chain_rows r LEFT JOIN proxies p USING (chain_id) "
            "WHERE r.chain_id = %s AND r.flow_id = %s ORDER BY r.seq", (chain_id, flow_id)).fetchall()
        events = [event_of(line, proxy) for line, proxy in rows]
        return Flow(events, self.chain_status(chain_id, [e["seq"] for e in events]))

    def chain_status(self, chain_id: str, seqs: list[int]) -> dict[int, tuple[bool, bool]]:
        """(hash_ok, link_ok) of the given rows: each hash recomputed from its line, each
        prev_hash compared with the row before it in the chain."""
        want = sorted(set(seqs) | {s - 1 for s in seqs if s > 1})
        rows = self.con.execute("SELECT seq, line FROM chain_rows WHERE chain_id = %s AND seq = ANY(%s)",
                                (chain_id, want)).fetchall()
        parsed = {seq: orjson.loads(line) for seq, line in rows}
        out = {}
        for s in seqs:
            row = parsed[s]
            before = parsed.get(s - 1)
            expected = record.GENESIS if s == 1 else (before or {}).get("row_hash")
            out[s] = (record.row_hash(row) == row.get("row_hash") and row.get("seq") == s,
                      row.get("prev_hash") == expected)
        return out

    # ------------------------------------------------------------ sql

    def query(self, sql: str) -> Rows:
        """One read-only statement: refused unless it reads; run alone (a prepared statement
        holds one command), in a READ ONLY transaction, as the reader role when there is one,
        with the trail's views first on the search path."""
        head = _LEADING_NOISE.sub("", sql, count=1)[:10].lower()
        if not head.startswith(_READS):
            word = head.split(None, 1)[0] if head.split() else "empty"
            raise ReaderError(f"shield sql runs reads only (SELECT, WITH, VALUES, TABLE, EXPLAIN, SHOW); refused: {word}")
        con = self.con
        try:
            with con.transaction(force_rollback=True):
                con.execute("SET TRANSACTION READ ONLY")
                if self.reader_role():
                    con.execute(f"SET LOCAL ROLE {schema.READER_ROLE}")
                con.execute(f"SET LOCAL search_path = {views.SCHEMA}, public")
                cur = con.cursor()
                cur.execute(sql, prepare=True)  # type: ignore[arg-type] - the user's own SQL, run read-only
                if cur.description is None:
                    raise ReaderError("shield sql: the statement returned no rows to show")
                return Rows([d.name for d in cur.description], cur.fetchall())
        except psycopg.errors.ReadOnlySqlTransaction as e:
            raise ReaderError(f"shield sql runs reads only; PostgreSQL refused a write: {db.first_line(e)}") from None
        except psycopg.errors.InsufficientPrivilege as e:
            raise ReaderError(f"shield sql reads as the read-only role {schema.READER_ROLE}: {db.first_line(e)}") from None
        except psycopg.Error as e:
            if "multiple commands" in str(e):
                raise ReaderError("shield sql runs one statement at a time") from None
            raise ReaderError(f"SQL: {db.first_line(e)}") from None

    def reader_role(self) -> bool:
        """Whether this user may take the read-only role (db.grant_readers makes it)."""
        row = self.con.execute("SELECT pg_has_role(current_user, oid, 'MEMBER') FROM pg_roles WHERE rolname = %s",
                               (schema.READER_ROLE,)).fetchone()
        return bool(row and row[0])

    # ------------------------------------------------------------ report, export

    def flows(self, filters: Filters = NO_FILTER) -> FleetFlowSet:
        return FleetFlowSet(self.con, filters)

    def report(self, filters: Filters = NO_FILTER, **kw: Any) -> str:
        from shield_addon import report

        return report.render_report(self.flows(filters), **kw)  # type: ignore[arg-type] - FlowSet's shape

    def events(self, filters: Filters = NO_FILTER) -> FleetEvents:
        return FleetEvents(self.con, filters)

    def export(self, fmt: str, out: Path, filters: Filters = NO_FILTER,
               described: dict[str, Any] | None = None) -> dict[str, Any]:
        from shield_addon import export

        return export.export(self.events(filters), fmt, out, AuditDir(out / "-no-audit-dir-"),  # type: ignore[arg-type]
                             described if described is not None else filters.given())

    # ------------------------------------------------------------ proof, status

    def verify(self, publics: Sequence[Ed25519PublicKey],
               progress: Callable[[int], None] | None = None) -> FleetReport:
        from shield_addon.fleet import proof

        return proof.verify(self.con, publics, progress)

    def status(self) -> Rows:
        """Each proxy: who and where, its heartbeat's age, how far its journal and shipping are."""
        return self._rows(STATUS_SQL)


_TIMES = frozenset(name for name, typ in record.COLUMNS if typ == "TIMESTAMP")


def event_of(line: str, proxy: str | None) -> dict[str, Any]:
    """One event as the local reader returns it (every column, times as datetimes, JSON
    columns as their text), read from the journal's line in Python: the `events` view reads
    the big columns with PostgreSQL's json operators, which refuse a whole line holding a
    \\u0000 (a NUL in a body), and the line is what the chain proves."""
    row = orjson.loads(line)
    event = {name: row.get(name) for name in record.COLUMN_NAMES}
    for name in _TIMES:
        if isinstance(event[name], str):
            event[name] = journal_time(event[name])
    event["proxy"] = proxy
    return event


def journal_time(text: str) -> datetime | str:
    """The journal's time text as PostgreSQL's `timestamp` reads it (an offset is dropped)."""
    try:
        return datetime.fromisoformat(text).replace(tzinfo=None)
    except ValueError:
        return text


def parquet_sql(lines: Path, out: Path, chain: str) -> str:
    """DuckDB's COPY of an export's JSON lines (every trail column and `proxy`) to Parquet,
    typed and partitioned as queries.export_parquet_sql does for one proxy."""
    from shield_addon.store import sql_str

    types = {**{n: ("VARCHAR" if t == "JSON" else t) for n, t in record.COLUMNS}, "proxy": "VARCHAR"}
    spec = "{" + ", ".join(f"'{n}': '{t}'" for n, t in types.items()) + "}"
    cols = ", ".join(f"{n}::JSON AS {n}" if t == "JSON" else n for n, t in [*record.COLUMNS, ("proxy", "VARCHAR")])
    return (f"COPY (SELECT {cols}, strftime(ts, '%Y-%m-%d') AS date FROM read_json({sql_str(str(lines))}, "
            f"format='newline_delimited', columns={spec})) TO {sql_str(str(out))} (FORMAT parquet, PARTITION_BY (date), "
            f"COMPRESSION zstd, OVERWRITE_OR_IGNORE, FILENAME_PATTERN 'events-{chain}-{{i}}')")


STATUS_SQL = """SELECT name, host, listen, version, last_seen,
    round(extract(epoch FROM now() - last_seen))::bigint AS age_s,
    journal_seq, shipped_seq, journal_seq - shipped_seq AS lag, ship_error, chain_id
FROM proxies ORDER BY name, chain_id"""


def ensure_schema(con: psycopg.Connection) -> None:
    """The views this reader asks exist from schema version 2: bring a fleet's older database up
    to date when this user may; otherwise say who can. A database without a fleet is left
    alone (a mistyped URL must not gain agent-shield's tables)."""
    row = con.execute("SELECT to_regclass('schema_version') IS NOT NULL").fetchone()
    if not (row and row[0]):
        raise db.FleetError(f"{shown(con_url(con))} holds no agent-shield fleet: start a proxy with "
                            "--set shield_fleet=URL to create it")
    have = con.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()
    if have and have[0] >= schema.VERSION:
        return
    try:
        db.migrate(con)
    except psycopg.Error as e:
        raise db.FleetError(f"the fleet database is at schema version {have[0] if have else 0}; start a proxy of this "
                            f"version with shield_fleet, or run shield as a user that may create its views "
                            f"({db.first_line(e)})") from None


def con_url(con: psycopg.Connection) -> str:
    i = con.info
    return f"postgresql://{i.user}@{i.host}:{i.port}/{i.dbname}"


class FleetFlowSet:
    """The report's counts and pages over the filtered fleet timeline (reader.FlowSet's shape)."""

    def __init__(self, con: psycopg.Connection, filters: Filters) -> None:
        self.con = con
        self.flows, self.params = views.flows_sql(filters)

    def _ask(self, sql: str, before: Sequence[Any] = (), after: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        # `sql` holds `{flows}` once; its placeholders sit between `before` and `after`.
        text = pg(sql).format(flows=f"{self.flows} AS flows")
        return self.con.execute(text, [*before, *self.params, *after]).fetchall()  # type: ignore[arg-type]

    def summary(self) -> tuple[Any, ...]:
        return self._ask(queries.REPORT_SUMMARY)[0]

    def by_decision(self) -> list[tuple[str, int]]:
        return self._ask(queries.REPORT_BY_DECISION)  # type: ignore[return-value]

    def by(self, group: str, limit: int) -> list[tuple[Any, ...]]:
        return self._ask(queries.report_by_sql(group), after=[limit])

    def per_bucket(self, step: int) -> list[tuple[int, int, int]]:
        sql = (f"SELECT floor(extract(epoch FROM ts) / %s)::bigint AS b, count(*), count(*) FILTER (WHERE {HELD}) "
               "FROM {flows} GROUP BY b ORDER BY b")
        text = sql.format(flows=f"{self.flows} AS flows")
        return self.con.execute(text, [step, *self.params]).fetchall()  # type: ignore[arg-type, return-value]

    def page(self, limit: int) -> list[tuple[Any, ...]]:
        return self._ask(queries.REPORT_FLOWS, after=[limit])

    def holds(self, limit: int) -> list[tuple[Any, ...]]:
        sql = ("SELECT held_at, flow_id, agent, rule_id, severity, decision, reviewer, wait_s, edited, reviewer_comment "
               f"FROM {views.SCHEMA}.holds WHERE flow_id IN (SELECT flow_id FROM {self.flows} AS flows) "
               "ORDER BY held_at, flow_id LIMIT %s")
        return self.con.execute(sql, [*self.params, limit]).fetchall()  # type: ignore[arg-type]


# One row per flow for OCSF, as queries.EXPORT_FLOWS: the timeline's columns with the request
# event's and the decision's.
_EXPORT_FLOWS = """
SELECT t.*, r.seq AS request_seq, r.row_hash AS request_row_hash, r.client_ip, r.port, r.url, r.scheme,
       r.resource_type, r.matched_rules, r.mode, r.ruleset_sha256, r.severity, r.request_sha256,
       d.reviewer_comment, d.edited
FROM {flows} t
JOIN chain_rows r ON r.chain_id = t.chain_id AND r.flow_id = t.flow_id AND r.stage = 'request'
LEFT JOIN LATERAL (SELECT reviewer_comment, edited FROM chain_rows x WHERE x.chain_id = t.chain_id
    AND x.flow_id = t.flow_id AND x.stage = 'decision' ORDER BY x.seq DESC LIMIT 1) d ON true
ORDER BY t.chain_id, r.seq
"""


class FleetEvents:
    """The events an export writes (reader.EventSelection's shape): every event of the flows
    the filters select, or every event; per chain, in seq order, streamed."""

    def __init__(self, con: psycopg.Connection, filters: Filters) -> None:
        self.con = con
        self.filtered = filters != NO_FILTER
        source, before = views.narrowed(filters)
        cond, params = views.where(filters)
        self.flow_source = f"(SELECT f.*, p.name AS proxy FROM ({views.fold_sql(source)}) f " \
                           f"LEFT JOIN proxies p USING (chain_id)) t0{cond}"
        self.flow_params = [*before, *params]
        selected = f"(SELECT chain_id, flow_id FROM {self.flow_source})"
        self.rows_where = f" WHERE (chain_id, flow_id) IN {selected}" if self.filtered else ""

    def range(self) -> tuple[int | None, int | None, int, list[str]]:
        sql = f"SELECT min(seq), max(seq), count(*), array_agg(DISTINCT chain_id) FROM chain_rows{self.rows_where}"
        row = self.con.execute(sql, self.flow_params if self.filtered else []).fetchone()  # type: ignore[arg-type]
        assert row is not None
        return row[0], row[1], row[2], sorted(c for c in row[3] or [] if c)

    def chain_id(self) -> str | None:
        """What the Parquet files are named after: many chains."""
        return "fleet"

    def write_parquet(self, out: Path, chain: str) -> None:
        """Parquet as a single proxy's export writes it (hive-partitioned by date), with a
        `proxy` column, and each chain's signed checkpoints beside it (checkpoints/<chain>.log).
        The events pass through a JSON-lines file DuckDB reads: one streamed pass, bounded memory."""
        from shield_addon import export, store
        from shield_addon.duck import duckdb

        with tempfile.TemporaryDirectory(prefix="shield-export-") as tmp:
            lines = Path(tmp) / "events.jsonl"
            export.write_lines(lines, self.events())
            con = duckdb.connect()
            try:
                con.execute(f"SET memory_limit = '{store.memory_limit(0.5, 4 << 30)}'")
                con.execute("SET partitioned_write_flush_threshold = 100000")
                con.execute(parquet_sql(lines, out, chain))
            finally:
                con.close()
        folder = out / "checkpoints"
        folder.mkdir(exist_ok=True)
        for chain_id in self.range()[3]:
            rows = self.con.execute("SELECT line FROM checkpoints WHERE chain_id = %s ORDER BY seq, line", (chain_id,))
            (folder / f"{chain_id.replace('/', '_')}.log").write_text("".join(r[0] + "\n" for r in rows.fetchall()))

    def events(self) -> Iterator[dict[str, Any]]:
        sql = (f"SELECT line, proxy FROM (SELECT r.chain_id, r.flow_id, r.seq, r.line, p.name AS proxy FROM chain_rows r "
               f"LEFT JOIN proxies p USING (chain_id)) e{self.rows_where} ORDER BY chain_id, seq")
        for row in self._stream(sql, self.flow_params if self.filtered else []):
            yield event_of(row["line"], row["proxy"])

    def flows(self) -> Iterator[dict[str, Any]]:
        flows = f"(SELECT * FROM {self.flow_source})"
        return self._stream(_EXPORT_FLOWS.format(flows=flows), self.flow_params)

    def _stream(self, sql: str, params: Sequence[Any]) -> Iterator[dict[str, Any]]:
        """A server-side cursor: a big export holds BATCH rows at a time, not the fleet."""
        with self.con.transaction(), self.con.cursor(name="shield_export") as cur:
            cur.itersize = BATCH
            cur.execute(sql, params)  # type: ignore[arg-type] - our own SQL text, values bound
            names: list[str] | None = None
            for row in cur:
                if names is None:
                    names = [d.name for d in cur.description or []]
                yield dict(zip(names, row))
