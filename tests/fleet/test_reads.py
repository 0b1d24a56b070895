"""The fleet's trail for analysts: `--fleet` on timeline, show, sql, report and export, and
`shield fleet status`, over a real PostgreSQL holding three proxies' shipped journals.

The views must mean what audit.duckdb's views mean: each proxy's own trail, read by the local
Reader from its audit.duckdb, is the reference the fleet's answers are compared with.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from scripts import fleet_trail, postgres
from shield_addon import store
from shield_addon.core.globs import compile_glob
from shield_addon.fleet import db, views
from shield_addon.fleet.reads import FleetReader
from shield_addon.queries import Filters, ReaderError
from shield_addon.reader import Reader

FLOWS = 40  # per proxy, over the last 24 hours: 85 events each
NOW = datetime.now(UTC).replace(tzinfo=None)


@pytest.fixture(scope="module")
def fleet(pg: postgres.Postgres, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, list]]:
    """Three proxies' trails, shipped by the writer's shipper; each also ingested locally."""
    url = pg.database()
    trails = fleet_trail.fleet(url, tmp_path_factory.mktemp("trails"), 3, FLOWS, 24)
    for t in trails:
        store.ingest(t.audit)
    yield url, trails


def shield(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "shield_addon.cli", *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "COLUMNS": "200", **(env or {})})


def lines(cp: subprocess.CompletedProcess) -> list[dict]:
    assert cp.returncode == 0, cp.stderr
    return [json.loads(x) for x in cp.stdout.splitlines()]


FILTERS = [
    Filters(),
    Filters(since=NOW - timedelta(hours=1)),
    Filters(since=NOW - timedelta(hours=6), until=NOW - timedelta(hours=2)),
    Filters(agent="DEPLOY-*"),
    Filters(decision="denied", reviewer="bo?"),
    Filters(table="ord*"),
    Filters(namespace="[ps]*", rule="hold-*"),
    Filters(host="*.example.com", action_type="update", service="k8s.internal"),
]


@pytest.mark.parametrize("filters", FILTERS, ids=lambda f: ",".join(f.given()) or "none")
def test_the_fleet_timeline_is_every_proxy_s_own_timeline(fleet: tuple[str, list], filters: Filters) -> None:
    url, trails = fleet
    with FleetReader(url) as reader:
        found = reader.timeline(filters)
    assert found.columns[-1] == "proxy"
    got = {frozen((r[-1], *r[:-1])) for r in found.rows}
    want = set()
    for t in trails:
        with Reader(t.audit) as local:
            want |= {frozen((t.name, *r)) for r in local.timeline(filters).rows}
    assert got == want
    assert filters.given() or len(got) == 3 * FLOWS


@pytest.mark.parametrize("filters", [Filters(), Filters(agent="sql-agent"), Filters(decision="denied"),
                                     Filters(until=NOW - timedelta(hours=20))], ids=lambda f: ",".join(f.given()) or "none")
def test_the_timeline_with_a_limit_keeps_the_newest_flows_in_order(fleet: tuple[str, list], filters: Filters) -> None:
    """The newest N are looked for in a widening window: never one flow fewer or other than
    the whole timeline's newest N."""
    url, _ = fleet
    with FleetReader(url) as reader:
        every = reader.timeline(filters)
        for n in (1, 5, 200):
            newest = reader.timeline(filters, limit=n)
            assert [r[:2] for r in newest.rows] == sorted(r[:2] for r in every.rows)[-n:]


@pytest.mark.parametrize("view", ["holds", "pending", "denials"])
def test_the_row_views_are_every_proxy_s_own_with_a_proxy_column(fleet: tuple[str, list], view: str) -> None:
    url, trails = fleet
    with FleetReader(url) as reader:
        found = reader.query(f"SELECT * FROM {view}")
    assert found.columns[-1] == "proxy"
    got = Counter(frozen((r[-1], *r[:-1])) for r in found.rows)
    want: Counter = Counter()
    for t in trails:
        with Reader(t.audit) as local:
            want.update(frozen((t.name, *r)) for r in local.query(f"SELECT * FROM {view}").rows)
    assert got == want
    assert view == "pending" or got


def test_by_agent_and_by_reviewer_add_up_the_proxies(fleet: tuple[str, list]) -> None:
    url, trails = fleet
    with FleetReader(url) as reader:
        agents = {r["agent"]: r for r in reader.query("SELECT * FROM by_agent").dicts()}
        reviewers = {r["reviewer"]: r for r in reader.query("SELECT * FROM by_reviewer").dicts()}
    flows: dict[str, int] = {}
    decisions: dict[str, int] = {}
    for t in trails:
        with Reader(t.audit) as local:
            for r in local.query("SELECT agent, flows FROM by_agent").rows:
                flows[r[0]] = flows.get(r[0], 0) + r[1]
            for r in local.query("SELECT reviewer, decisions FROM by_reviewer").rows:
                decisions[r[0]] = decisions.get(r[0], 0) + r[1]
    assert {a: r["flows"] for a, r in agents.items()} == flows
    assert {a: r["decisions"] for a, r in reviewers.items()} == decisions
    assert all(r["proxies"] == ["proxy-1", "proxy-2", "proxy-3"] for r in agents.values())


def test_timeline_fleet_on_the_command_line_and_from_the_environment(fleet: tuple[str, list]) -> None:
    url, _ = fleet
    rows = lines(shield("timeline", "--fleet", url, "--json", "--agent", "sql-agent"))
    assert rows and {r["agent"] for r in rows} == {"sql-agent"}
    assert {r["proxy"] for r in rows} == {"proxy-1", "proxy-2", "proxy-3"}
    assert lines(shield("timeline", "--json", "--agent", "sql-agent", env={"SHIELD_FLEET": url})) == rows
    table = shield("timeline", "--fleet", url, "--since", "3h")
    assert table.returncode == 0 and re.search(r"proxy-\d", table.stdout) and " proxy" in table.stdout


def test_without_a_fleet_the_commands_read_the_local_trail(fleet: tuple[str, list], tmp_path: Path) -> None:
    _, trails = fleet
    env = {k: v for k, v in os.environ.items() if k != "SHIELD_FLEET"}
    cp = subprocess.run([sys.executable, "-m", "shield_addon.cli", "timeline", "--json", "--dir", str(trails[0].audit)],
                        capture_output=True, text=True, env=env, timeout=60)
    rows = lines(cp)
    assert len(rows) == FLOWS and "proxy" not in rows[0]


def test_show_finds_a_flow_by_prefix_and_names_its_proxy(fleet: tuple[str, list]) -> None:
    url, trails = fleet
    with FleetReader(url) as reader:
        flow_id = reader.query("SELECT flow_id FROM timeline WHERE proxy = 'proxy-2' AND decision = 'denied' LIMIT 1").rows[0][0]
    cp = shield("show", flow_id[:10], "--fleet", url)
    assert cp.returncode == 0, cp.stderr
    assert f"{flow_id}" in cp.stdout and "on proxy proxy-2" in cp.stdout
    assert "every row hash and link verifies" in cp.stdout and 'denied by bob' in cp.stdout or "denied by alice" in cp.stdout
    events = lines(shield("show", flow_id, "--fleet", url, "--json"))
    assert [e["stage"] for e in events] == ["request", "decision"]
    assert all(e["hash_ok"] and e["link_ok"] and e["proxy"] == "proxy-2" for e in events)
    assert json.loads(events[0]["request_headers"]) == [["content-type", "application/json"]]
    missing = shield("show", "ffffffffffff-none", "--fleet", url)
    assert missing.returncode == 2 and "no flow" in missing.stderr


def frozen(row: tuple) -> tuple:
    """A row as a set member: lists (tables) as tuples."""
    return tuple(tuple(v) if isinstance(v, list) else v for v in row)


def test_show_and_export_read_a_body_with_a_nul_byte(fleet: tuple[str, list], tmp_path: Path) -> None:
    """PostgreSQL's json operators refuse a line holding \\u0000; the readers parse lines themselves."""
    url, _ = fleet
    with FleetReader(url) as reader:
        flow_id = reader.query("SELECT flow_id FROM timeline WHERE path = '/v1/items/1' AND proxy = 'proxy-1'").rows[0][0]
    events = lines(shield("show", flow_id, "--fleet", url, "--json"))
    assert events[0]["request_body"] == "n=1\x00 (a NUL byte, as binary bodies have)" and events[0]["hash_ok"]
    text = shield("show", flow_id, "--fleet", url)
    assert text.returncode == 0 and "n=1\\x00 (a NUL" in text.stdout and "\x00" not in text.stdout
    out = tmp_path / "one.jsonl"
    assert shield("export", "--fleet", url, "--format", "jsonl", "--out", str(out), "--flow", flow_id).returncode == 0
    assert [json.loads(x)["request_body"] for x in out.read_text().splitlines()][0] == events[0]["request_body"]


READ_ONLY_REFUSALS = [
    ("DELETE FROM chain_rows", "reads only"),
    ("UPDATE proxies SET name = 'x'", "reads only"),
    ("DROP TABLE chain_rows", "reads only"),
    ("SET TRANSACTION READ WRITE; DELETE FROM chain_rows", "reads only"),
    ("SELECT 1; DELETE FROM chain_rows", "one statement"),
    ("WITH gone AS (DELETE FROM chain_rows RETURNING 1) SELECT * FROM gone", "refused a write"),
    ("EXPLAIN ANALYZE DELETE FROM chain_rows", "refused a write"),
    ("SELECT set_config('transaction_read_only', 'off', true)", "read-write"),
    ("SELECT secret FROM fleet_secret", "read-only role"),
    ("/* a comment */ INSERT INTO proxies (chain_id, name) VALUES ('x', 'y')", "reads only"),
]


@pytest.mark.parametrize(("statement", "says"), READ_ONLY_REFUSALS)
def test_sql_fleet_is_read_only(fleet: tuple[str, list], statement: str, says: str) -> None:
    url, _ = fleet
    before = count_rows(url)
    cp = shield("sql", "--fleet", url, statement)
    assert cp.returncode == 2 and says in cp.stderr, cp.stderr
    assert count_rows(url) == before


def count_rows(url: str) -> tuple[int, int]:
    with psycopg.connect(url) as con:
        return con.execute("SELECT (SELECT count(*) FROM chain_rows), (SELECT count(*) FROM proxies)").fetchone()


def test_sql_fleet_reads_the_views_by_their_local_names(fleet: tuple[str, list]) -> None:
    url, _ = fleet
    rows = lines(shield("sql", "--fleet", url, "SELECT proxy, count(*) AS n FROM timeline GROUP BY proxy ORDER BY 1",
                        "--json"))
    assert rows == [{"proxy": f"proxy-{i}", "n": FLOWS} for i in (1, 2, 3)]
    like = lines(shield("sql", "--fleet", url, "SELECT count(*) AS n FROM events WHERE path LIKE '/v1/items/1%'", "--json"))
    assert like[0]["n"] > 0  # a % in the user's SQL is SQL, not a placeholder


def test_report_fleet_writes_one_page_over_every_proxy(fleet: tuple[str, list], tmp_path: Path) -> None:
    url, _ = fleet
    page = tmp_path / "r.html"
    cp = shield("report", "--fleet", url, "--html", str(page), "--agent", "deploy-bot")
    assert cp.returncode == 0, cp.stderr
    html = page.read_text()
    with FleetReader(url) as reader:
        n = len(reader.timeline(Filters(agent="deploy-bot")).rows)
    assert f"<b>{n:,}</b>flows" in html and "deploy-bot" in html and "report-bot" not in html


def test_export_fleet_jsonl_and_ocsf(fleet: tuple[str, list], tmp_path: Path) -> None:
    url, trails = fleet
    out = tmp_path / "all.jsonl"
    assert shield("export", "--fleet", url, "--format", "jsonl", "--out", str(out)).returncode == 0
    events = [json.loads(x) for x in out.read_text().splitlines()]
    manifest = json.loads(out.with_name("all.jsonl.manifest.json").read_text())
    assert len(events) == manifest["events"] == sum(t.events for t in trails)
    assert sorted(manifest["chain_ids"]) == sorted(t.chain_id for t in trails)
    assert {e["proxy"] for e in events} == {"proxy-1", "proxy-2", "proxy-3"}
    ocsf = tmp_path / "denied.ocsf"
    cp = shield("export", "--fleet", url, "--format", "ocsf", "--out", str(ocsf), "--decision", "denied")
    assert cp.returncode == 0, cp.stderr
    docs = [json.loads(x) for x in ocsf.read_text().splitlines()]
    with FleetReader(url) as reader:
        denied = reader.timeline(Filters(decision="denied")).rows
    assert len(docs) == len(denied) > 0
    assert {d["unmapped"]["decision"] for d in docs} == {"denied"} and all(d["unmapped"]["seq"] for d in docs)


def test_export_fleet_parquet_with_each_chain_s_checkpoints(fleet: tuple[str, list], tmp_path: Path) -> None:
    import duckdb

    url, trails = fleet
    out = tmp_path / "pq"
    cp = shield("export", "--fleet", url, "--format", "parquet", "--out", str(out), "--since", "12h")
    assert cp.returncode == 0, cp.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    files = {f["path"] for f in manifest["files"]}
    assert {f"checkpoints/{t.chain_id}.log" for t in trails} <= files
    assert all(p.startswith("date=") and "/events-fleet-" in p for p in files if p.endswith(".parquet"))
    got = duckdb.sql(f"SELECT proxy, count(*), count(DISTINCT flow_id), min(seq) > 0 FROM read_parquet('{out}/**/*.parquet', "
                     "hive_partitioning = true) GROUP BY proxy ORDER BY proxy").fetchall()
    with FleetReader(url) as reader:
        flows = {r[0]: r[1] for r in reader.query("SELECT proxy, count(*) FROM timeline WHERE ts >= now() - interval '12 hours' "
                                                   "GROUP BY proxy").rows}
    assert [(p, f) for p, _, f, _ in got] == sorted(flows.items())
    assert sum(n for _, n, _, _ in got) == manifest["events"] and all(ok for *_, ok in got)
    log = (out / "checkpoints" / f"{trails[0].chain_id}.log").read_text().splitlines()
    assert log and all(json.loads(x)["chain_id"] == trails[0].chain_id for x in log)


def test_fleet_status_shows_each_proxy_and_its_lag(fleet: tuple[str, list], pg: postgres.Postgres) -> None:
    url, trails = fleet
    rows = {r["name"]: r for r in lines(shield("fleet", "status", "--fleet", url, "--json"))}
    assert set(rows) == {"proxy-1", "proxy-2", "proxy-3"}
    one = rows["proxy-1"]
    assert (one["journal_seq"], one["shipped_seq"], one["lag"]) == (trails[0].events, trails[0].events, 0)
    assert one["host"] == "host-proxy-1" and one["listen"] and one["version"] and one["age_s"] >= 0
    table = shield("fleet", "status", "--fleet", url)
    assert table.returncode == 0 and "proxy-3" in table.stdout and "ago" in table.stdout
    nowhere = shield("fleet", "status", env={"SHIELD_FLEET": ""})
    assert nowhere.returncode == 2 and "--fleet" in nowhere.stderr


def migrated(pg: postgres.Postgres) -> str:
    """A fresh fleet database, its schema made as a proxy makes it."""
    url = pg.database()
    with db.connect(url) as con:
        db.migrate(con)
    return url


def test_fleet_status_lag_is_journal_minus_shipped(pg: postgres.Postgres) -> None:
    url = migrated(pg)
    with FleetReader(url) as reader:
        reader.con.execute("INSERT INTO proxies (chain_id, name, journal_seq, shipped_seq, ship_error, last_seen) "
                           "VALUES ('c1', 'behind', 120, 100, 'connection refused', now() - interval '90 seconds')")
        row = reader.status().dicts()[0]
    assert (row["lag"], row["ship_error"], row["age_s"]) == (20, "connection refused", 90)


def test_an_unreachable_fleet_is_a_clear_error() -> None:
    cp = shield("timeline", "--fleet", "postgresql://nobody@127.0.0.1:1/none")
    assert cp.returncode == 2 and "cannot reach the fleet database" in cp.stderr and "Traceback" not in cp.stderr


def test_hostile_proxy_names_are_shown_not_obeyed(pg: postgres.Postgres) -> None:
    url = migrated(pg)
    with FleetReader(url) as reader:
        reader.con.execute("INSERT INTO proxies (chain_id, name) VALUES ('c1', %s)", ("evil\x1b[2J\x07",))
    cp = shield("fleet", "status", "--fleet", url)
    assert cp.returncode == 0 and "\x1b[2J" not in cp.stdout and "\\x1b" in cp.stdout


# ---------------------------------------------------------------- the filters' SQL


def test_where_binds_every_value_and_compares_like_the_local_reader() -> None:
    sql, params = views.where(Filters(agent="deploy-*", table="t?", flow="ab", decision="denied",
                                      since=datetime(2026, 1, 1)))
    assert sql == (" WHERE agent ~* %s AND EXISTS (SELECT 1 FROM unnest(tables) AS t(v) WHERE t.v ~* %s)"
                   " AND decision = %s AND starts_with(flow_id, %s) AND ts >= %s")
    assert params == ["^deploy\\-.*$", "^t.$", "denied", "ab", datetime(2026, 1, 1)]
    assert views.where(Filters()) == ("", [])


def test_a_time_or_id_filter_narrows_what_is_folded() -> None:
    source, params = views.narrowed(Filters(since=datetime(2026, 1, 1), flow="ab", agent="x"))
    assert "ts >= %s" in source and "starts_with(flow_id, %s)" in source and "agent" not in source
    assert params == [datetime(2026, 1, 1), "ab"]
    assert views.narrowed(Filters(agent="x")) == ("chain_rows", [])


GLOBS = ["deploy-*", "*.prod.example.com", "a?c", "[ab]*", "[!ab]*", "x[*]y", "100%", "a.b", "(x|y)", "a\\b",
         "^$", "*", "", "[]", "[]a]*", "[!]]*", "[a-c]x", "[\\]*", "[^a]*", "ÄÖ*", "{a,b}", "a+b", "€*"]
VALUES = ["deploy-bot", "DEPLOY-X", "api.prod.example.com", "apixprodxexamplexcom", "abc", "aXc", "a", "b", "c", "x*y",
          "xzy", "100%", "100x", "]", "[]", "bx", "^b", "€uro", "\\", "a.b", "axb", "(x|y)", "x", "a\\b", "^$", "",
          "äöü", "{a,b}", "a+b", "aab", "line\nbreak"]


def test_globs_mean_in_postgresql_what_they_mean_in_rules(pg: postgres.Postgres) -> None:
    """Every pattern against every value: PostgreSQL's `~*` on glob_regex agrees with core.globs."""
    with psycopg.connect(pg.url()) as con:
        for pattern in GLOBS:
            try:
                local = compile_glob(pattern)
            except ValueError:
                continue
            regex = views.glob_regex(pattern)
            got = con.execute("SELECT v, v ~* %s FROM unnest(%s::text[]) AS t(v)", (regex, VALUES)).fetchall()
            assert {v: ok for v, ok in got} == {v: bool(local.match(v)) for v in VALUES}, (pattern, regex)


def test_a_bad_query_is_a_reader_error(fleet: tuple[str, list]) -> None:
    url, _ = fleet
    with FleetReader(url) as reader, pytest.raises(ReaderError, match="SQL: .*no_such_table"):
        reader.query("SELECT * FROM no_such_table")


def test_the_fleet_readers_never_load_mitmproxy() -> None:
    code = ("import sys, shield_addon.fleet.reads, shield_addon.fleet.proof, shield_addon.cli.fleet; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'mitmproxy'))")
    cp = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert cp.returncode == 0 and cp.stdout.strip() == "[]", cp.stdout + cp.stderr


def test_a_database_without_a_fleet_is_left_alone(pg: postgres.Postgres) -> None:
    url = pg.database()
    cp = shield("timeline", "--fleet", url)
    assert cp.returncode == 2 and "holds no agent-shield fleet" in cp.stderr
    with psycopg.connect(url) as con:
        assert con.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone() == (0,)


def test_a_fleet_at_version_1_gets_the_views_from_the_first_reader_that_may(pg: postgres.Postgres) -> None:
    from shield_addon.fleet import schema

    url = pg.database()
    with psycopg.connect(url, autocommit=True) as con:
        con.execute("CREATE TABLE schema_version (version integer PRIMARY KEY, applied_at timestamptz DEFAULT now())")
        for statement in schema.MIGRATIONS[0]:
            con.execute(statement)
        con.execute("INSERT INTO schema_version (version) VALUES (1)")
    assert lines(shield("sql", "--fleet", url, "SELECT count(*) AS n FROM timeline", "--json")) == [{"n": 0}]
    with psycopg.connect(url) as con:
        assert con.execute("SELECT max(version) FROM schema_version").fetchone() == (schema.VERSION,)
