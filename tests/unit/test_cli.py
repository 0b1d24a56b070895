from __future__ import annotations

import argparse
from datetime import UTC, datetime

import pytest

from shield_addon import cli


def args(**kw) -> argparse.Namespace:
    return cli.build_parser().parse_args(["timeline", *[x for k, v in kw.items() for x in (f"--{k.replace('_', '-')}", v)]])


def test_filters_become_one_parameterised_where() -> None:
    where, params = cli.where_clause(args(agent="bot-*", table="users", decision="denied", flow="ab12"))
    assert where == " WHERE agent GLOB ? AND list_contains(tables, ?) AND decision = ? AND starts_with(flow_id, ?)"
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
