"""The benchmarks' arithmetic: medians, quantiles, trends, and shield/bare ratios per round."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest

from scripts.bench.stats import compare, median, quantile, slope


@dataclass
class R:
    round: int
    rps: float
    cpu_ms: float
    p50_ms: float
    unreliable: bool = False


def test_median_of_nothing_is_nan() -> None:
    assert math.isnan(median([]))
    assert median([3, 1, 2]) == 2
    assert median(x for x in (1.0, 2.0)) == 1.5


def test_quantile_is_the_sample_at_rank_floor_n_q() -> None:
    xs = list(range(100, 0, -1))  # unsorted on purpose
    assert quantile(xs, 0.5) == 51
    assert quantile(xs, 0.99) == 100
    assert quantile([7.0], 0.99) == 7.0
    assert math.isnan(quantile([], 0.5))


def test_slope_is_least_squares_and_flat_without_a_spread() -> None:
    assert slope([(0, 1), (1, 3), (2, 5)]) == pytest.approx(2.0)
    assert slope([(0, 1), (1, 1), (2, 1)]) == 0.0
    assert slope([(5, 1)]) == 0.0
    assert slope([(1, 1), (1, 9)]) == 0.0


def test_ratios_are_taken_within_each_round() -> None:
    bare = {1: R(1, 1000, 1.0, 10.0), 2: R(2, 500, 2.0, 20.0)}
    shield = [R(1, 800, 1.25, 12.0), R(2, 450, 2.5, 21.0)]
    c = compare(bare, shield)
    assert c.ratio == pytest.approx([0.8, 0.9])
    assert c.added_cpu_us == pytest.approx([250.0, 500.0])
    assert c.added_p50_ms == pytest.approx([2.0, 1.0])
    assert c.cpu_ratio == pytest.approx([0.8, 0.8])
    fig = c.figures()
    assert fig["ratio"] == pytest.approx(0.85)
    assert fig["added_cpu_us"] == pytest.approx(375.0)
    assert fig["ratio_reliable"] == pytest.approx(0.85)


def test_unreliable_rounds_are_left_out_of_the_reliable_figures_only() -> None:
    bare = {1: R(1, 1000, 1.0, 10.0), 2: R(2, 1000, 1.0, 10.0, unreliable=True), 3: R(3, 1000, 1.0, 10.0)}
    shield = [R(1, 900, 1.1, 11.0), R(2, 100, 9.0, 90.0), R(3, 700, 1.4, 14.0, unreliable=True)]
    c = compare(bare, shield)
    assert c.reliable == [0]
    fig = c.figures()
    assert fig["ratio"] == pytest.approx(0.7)
    assert fig["ratio_reliable"] == pytest.approx(0.9)


def test_a_round_without_a_baseline_is_not_compared() -> None:
    c = compare({1: R(1, 1000, 1.0, 10.0)}, [R(1, 500, 2.0, 20.0), R(2, 500, 2.0, 20.0)])
    assert c.ratio == [0.5]
    assert math.isnan(compare({}, [R(1, 1, 1, 1)]).figures()["ratio"])
