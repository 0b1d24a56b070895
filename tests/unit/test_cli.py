from __future__ import annotations

import argparse
from datetime import UTC, datetime

import pytest

from shield_addon import cli
from shield_addon.cli import timeline
from shield_addon.cli.render import csv_cell


def args(**kw) -> argparse.Namespace:
    return cli.build_parser().parse_args(["timeline", *[x for k, v in kw.items() for x in (f"--{k.replace('_', '-')}", v)]])


def test_filters_become_one_parameterised_where() -> None:
    where, params = cli.where_clause(args(agent="bot-*", table="users", decision="denied", flow="ab12"))
    assert where == (" WHERE lower(agent) GLOB lower(?) AND list_bool_or([lower(t) GLOB lower(?) for t in tables])"
                     " AND decision = ? AND starts_with(flow_id, ?)")
    assert params == ["bot-*", "users", "denied", "ab12"]


def test_a_hostile_filter_value_stays_a_value() -> None:
    where, params = cli.where_clause(args(agent="x' OR 1=1 --"))
    assert "OR 1=1" not in where and params == ["x' OR 1=1 --"]


def test_since_takes_durations_and_iso_times() -> None:
    now = datetime(2026, 1, 2, 12, 0, tzinfo=UTC)
    assert cli.parse_time("2h", now=now) == datetime(2026, 1, 2, 10, 0)
    assert cli.parse_time("30m", now=now) == datetime(2026, 1, 2, 11, 30)
    assert cli.parse_time("2026-01-02T13:00:00+01:00") == datetime(2026, 1, 2, 12, 0)
    with pytest.raises(cli.UsageError):
        cli.parse_time("soonish")


def test_long_requests_are_shortened_in_the_middle() -> None:
    s = cli.shorten("GET api.example.com/" + "a" * 100 + "/end", 30)
    assert len(s) == 30 and s.startswith("GET api.exa") and s.endswith("/end") and "…" in s


def timeline_table(rows: list[dict], width: int, capsys: pytest.CaptureFixture[str],
                   monkeypatch: pytest.MonkeyPatch) -> tuple[list[str], str]:
    monkeypatch.setenv("COLUMNS", str(width))
    base = {"ts": datetime(2026, 11, 28, 9, 30), "flow_id": "0123456789abcdef", "agent": "deploy-bot", "method": "GET",
            "host": "k8s.prod.example.com", "path": "/api/v1/namespaces/prod/pods", "service": "kubernetes",
            "operation": "list", "namespace": "prod", "resource_name": None, "tables": [], "rule_id": "k8s-read",
            "decision": "allowed", "reviewer": None, "status_code": 200, "outcome": "forwarded", "duration_ms": 12.0}
    full = [{**base, **r} for r in rows]
    cols, people = timeline.for_people(list(base), [tuple(r.values()) for r in full])
    cli.render(cols, people, "table", title="t", optional=timeline.TIMELINE_OPTIONAL, middle="request")
    out, err = capsys.readouterr()
    return out.splitlines(), err


def test_the_timeline_fits_an_80_column_terminal_one_line_per_flow(capsys, monkeypatch) -> None:
    long_path = "/apis/apps/v1/namespaces/prod/deployments/" + "w" * 60 + "/scale"
    lines, err = timeline_table([{}, {"flow_id": "fedcba9876543210", "method": "DELETE", "path": long_path,
                                      "decision": "approved", "reviewer": "alice"}], 80, capsys, monkeypatch)
    assert all(len(line) <= 80 for line in lines), lines
    rows = [line for line in lines if line.startswith("11-28 09:30:00")]
    assert len(rows) == 2, lines  # nothing folded onto a second line
    assert "01234567" in rows[0] and "allowed" in rows[0] and "200" in rows[0]
    assert "DELETE k8s" in rows[1] and "…" in rows[1] and rows[1].split("approved")[0].rstrip().endswith("/scale")
    assert "too narrow for: ms, action" in err


def test_a_wide_terminal_shows_every_column_and_leaves_out_only_empty_ones(capsys, monkeypatch) -> None:
    lines, err = timeline_table([{}], 200, capsys, monkeypatch)
    header = next(line for line in lines if line.startswith("time (UTC)"))
    assert header.split() == ["time", "(UTC)", "flow", "agent", "request", "action", "rule", "decision", "status", "ms"]
    assert "GET k8s.prod.example.com/api/v1/namespaces/prod/pods" in lines[-1]  # not shortened: it fits
    assert err == ""  # reviewer was empty in every row: left out without a note


def test_a_table_too_wide_for_any_choice_becomes_one_block_per_row(capsys, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "60")
    cli.render(["a_rather_long_name", "another_long_name", "n"], [("x" * 30, "y" * 30, 1), ("p", "q", 2)], "table")
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert [line for line in lines if line.startswith("-[ row")] == ["-[ row 1 ]", "-[ row 2 ]"]
    assert lines[1].split() == ["a_rather_long_name", "x" * 30]  # whole names, whole values: nothing left out
    assert lines[2].split() == ["another_long_name", "y" * 30]
    assert all(len(line) <= 60 for line in lines) and err == ""


def test_sql_tables_that_fit_stay_tables(capsys, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    cli.render(["n", "decision"], [(3, "allowed"), (1, "denied")], "table")
    out, _ = capsys.readouterr()
    assert out.splitlines()[0].split() == ["n", "decision"] and "-[ row" not in out


def test_the_timeline_on_a_very_narrow_terminal_keeps_every_column_as_blocks(capsys, monkeypatch) -> None:
    lines, err = timeline_table([{"reviewer": "alice", "decision": "approved"}], 40, capsys, monkeypatch)
    names = [line.split()[0] for line in lines[2:] if line.strip()]
    assert lines[1] == "-[ row 1 ]" and names[:3] == ["time", "flow", "agent"] and "reviewer" in names and "ms" in names
    assert "too narrow" not in err


def test_a_prose_column_folds_and_the_table_stays_a_table(capsys, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    why = "action: expected 'allow', got 'hold' by rule k8s-delete-in-prod (and more words)"
    cli.render(["result", "test", "why"], [("FAIL", "rules/10-kubernetes.yaml:112", why)], "table", fold="why")
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["result", "test", "why"]
    assert lines[2].split()[:2] == ["FAIL", "rules/10-kubernetes.yaml:112"]  # the others stay whole
    assert "".join(line[lines[0].index("why"):].strip() for line in lines[2:]).replace(" ", "") == why.replace(" ", "")


# ---------------------------------------------------------------- in process: main([...]) as a user types it


def shield(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """`shield ARGV` in this process: (exit code, stdout, stderr)."""
    try:
        rc = cli.main(argv)
    except SystemExit as e:  # argparse: --help, bad arguments
        rc = e.code if isinstance(e.code, int) else 2
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.mark.parametrize("cmd", ["run", "timeline", "show", "sql", "verify", "rules", "agents", "env", "rules check", "agents add"])
def test_each_subcommand_has_help(cmd: str, capsys) -> None:
    rc, out, _ = shield([*cmd.split(), "--help"], capsys)
    assert rc == 0 and "usage: shield" in out


def test_filter_help_says_globs_are_case_insensitive(capsys) -> None:
    rc, out, _ = shield(["timeline", "--help"], capsys)
    text = " ".join(out.split())
    assert rc == 0 and "case-insensitive" in text and "as in rule files" in text and "1h30m" in text


def test_bundled_rules_check_and_their_tests_pass(capsys) -> None:
    assert shield(["rules", "check"], capsys)[0] == 0
    rc, out, _ = shield(["rules", "test"], capsys)
    assert rc == 0 and " 0 failed" in out


def test_since_must_be_a_duration_or_a_time(tmp_path, capsys) -> None:
    rc, _, err = shield(["timeline", "--since", "yesterday-ish", "--dir", str(tmp_path)], capsys)
    assert rc == 2 and "--since" in err and "Traceback" not in err


def test_explain_shows_the_action_every_rule_and_the_verdict(capsys) -> None:
    rc, out, err = shield(["rules", "explain", "POST", "https://db.internal/query", "--header", "content-type: application/json",
                           "--body", '{"query": "select 1; drop table users"}'], capsys)
    assert rc == 0, err
    assert "service=sql" in out and "tables=users" in out
    assert "MATCH" in out and "sql ✓" in out
    assert out.strip().splitlines()[-1].startswith("verdict  hold by ")


def test_explain_refuses_a_header_without_a_colon(capsys) -> None:
    rc, _, err = shield(["rules", "explain", "GET", "https://x/", "--header", "nocolon"], capsys)
    assert rc == 2 and "NAME:VALUE" in err


def test_since_takes_the_rules_duration_grammar() -> None:
    now = datetime(2026, 1, 2, 12, 0, tzinfo=UTC)
    assert cli.parse_time("1h30m", now=now) == datetime(2026, 1, 2, 10, 30)
    assert cli.parse_time("1w", now=now) == datetime(2025, 12, 26, 12, 0)
    assert cli.parse_time("90", now=now) == datetime(2026, 1, 2, 11, 58, 30)  # plain seconds, as in rule files
    assert cli.parse_time("2026-01-02") == datetime(2026, 1, 2)


def test_every_filter_the_reader_knows_has_a_flag() -> None:
    from shield_addon.cli.parser import FILTERS
    from shield_addon.queries import FILTER_COLUMNS

    assert [flag for flag, _ in FILTERS] == list(FILTER_COLUMNS)


def test_commands_without_data_do_not_load_duckdb(tmp_path) -> None:
    """A new interpreter each: whether DuckDB is loaded depends on what was imported before."""
    import subprocess
    import sys

    for argv in (["--help"], ["env", "x", "--confdir", str(tmp_path)], ["agents", "list", "--confdir", str(tmp_path)],
                 ["rules", "check"]):
        probe = ("import sys\nfrom shield_addon.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
                 "print('LOADED' if {'duckdb', '_duckdb'} & set(sys.modules) else 'NOT LOADED', file=sys.stderr)")
        cp = subprocess.run([sys.executable, "-c", probe, *argv], capture_output=True, text=True, timeout=60)
        assert cp.stderr.strip().endswith("NOT LOADED"), (argv, cp.stderr[-500:])


@pytest.mark.parametrize("value", ["=1+1", "+1", "-1+cmd|' /C calc'!A0", "@SUM(A1)", "\t=1", "\n=1"])
def test_a_cell_that_would_start_a_formula_is_shown_as_text(value: str) -> None:
    assert csv_cell(value).startswith("'")


@pytest.mark.parametrize(("value", "cell"), [(None, ""), (-3, "-3"), (1.5, "1.5"), ("GET", "GET"), ("a=b", "a=b"),
                                             ("x\x1b[2J", "x\\x1b[2J"), (["-a", "b"], "-a,b")])
def test_other_cells_are_as_before(value: object, cell: str) -> None:
    assert csv_cell(value) == cell
