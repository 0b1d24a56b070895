"""The scripts' flags: the old ones keep their meaning, --quick and --smoke shrink the runs."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from scripts.bench import cli, querytools
from scripts.bench import queries as bench_queries
from scripts.reliability import crash_loop, soak


def test_bench_proxy_defaults_are_the_full_run() -> None:
    a = cli.parse_args([])
    assert (a.rounds, a.duration, a.warmup, a.concurrency, a.calibration_rounds) == (5, 5.0, 1.0, 10, 2)
    assert a.scenarios == "http,https,http-body,http-paced"
    assert not a.no_profile and a.budget == 0.6 and a.check_rules is None


def test_bench_proxy_quick_caps_the_rounds_and_drops_the_profile() -> None:
    a = cli.parse_args(["--quick", "--rounds", "3", "--scenarios", "http"])
    assert (a.rounds, a.duration, a.warmup, a.calibration_rounds) == (2, 2.0, 0.5, 1)
    assert a.no_profile and a.scenarios == "http"
    assert cli.parse_args(["--quick", "--rounds", "1"]).rounds == 1


def test_bench_proxy_smoke_is_one_tiny_round_of_http() -> None:
    a = cli.parse_args(["--smoke", "--soak", "60", "--variant", "x=--set shield_mode=shadow"])
    assert (a.rounds, a.duration, a.scenarios, a.soak, a.soak_slice) == (1, 0.3, "http", 1.0, 0.5)
    assert a.check_rules == 20 and a.journal_burst == 200
    assert a.variant == ["x=--set shield_mode=shadow"]
    assert cli.parse_args(["--smoke"]).soak == 0.0  # no soak unless asked for


def test_bench_proxy_rejects_an_unknown_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        cli.parse_args(["--roundz", "2"])
    assert e.value.code == 2
    assert "--roundz" in capsys.readouterr().err


def test_crash_loop_smoke_is_two_rounds_with_early_kills() -> None:
    assert (crash_loop.parse_args([]).rounds, crash_loop.parse_args([]).latest_kill) == (20, 3.0)
    a = crash_loop.parse_args(["--smoke", "--seed", "7"])
    assert (a.rounds, a.agents, a.latest_kill, a.seed, a.victim) == (2, 4, 0.5, 7, "both")


def test_soak_smoke_is_seconds_long_and_the_analyst_hold_must_fit(capsys: pytest.CaptureFixture[str]) -> None:
    a = soak.parse_args(["--smoke"])
    assert (a.minutes, a.agents, a.report, a.analyst_hold) == (0.1, 4, 2.0, 0)
    with pytest.raises(SystemExit):
        soak.parse_args(["--minutes", "2", "--analyst-hold", "1"])
    assert "must end at least" in capsys.readouterr().err


@pytest.fixture
def sizes() -> Iterator[None]:
    saved = dict(querytools.SIZES.__dict__)
    yield
    querytools.SIZES.__dict__.update(saved)


def test_bench_queries_smoke_shrinks_every_size(sizes: None) -> None:
    assert bench_queries.parse_args([]).events == 10_000_000
    a = bench_queries.parse_args(["--smoke"])
    assert a.events == 2000
    assert querytools.SIZES == querytools.SMOKE
