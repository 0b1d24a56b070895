"""Pure arithmetic of the benchmarks: medians, quantiles, per-round ratios, a trend."""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

NAN = float("nan")


def median(xs: Iterable[float]) -> float:
    xs = list(xs)
    return statistics.median(xs) if xs else NAN


def quantile(xs: Iterable[float], q: float) -> float:
    """The q-quantile as the sample at rank floor(n*q) (p50, p99 of latencies); NaN if empty."""
    s = sorted(xs)
    return s[min(len(s) - 1, int(len(s) * q))] if s else NAN


def slope(points: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope of (t, y); 0 with fewer than two points or one t."""
    n = len(points)
    if n < 2:
        return 0.0
    mt = sum(t for t, _ in points) / n
    my = sum(y for _, y in points) / n
    den = sum((t - mt) ** 2 for t, _ in points)
    return sum((t - mt) * (y - my) for t, y in points) / den if den else 0.0


class Measured(Protocol):
    """What a ratio needs of one run (runs.Run has it)."""

    round: int
    rps: float
    cpu_ms: float
    p50_ms: float

    @property
    def unreliable(self) -> bool: ...


@dataclass
class Comparison:
    """One proxy against the baseline, round by round (each round's runs share the machine's state)."""

    ratio: list[float]  # throughput / baseline's
    added_cpu_us: list[float]  # CPU per request over the baseline's, µs
    added_p50_ms: list[float]
    cpu_ratio: list[float]  # baseline's CPU per request / this one's: the throughput ratio if CPU were the only limit
    reliable: list[int]  # indexes of the rounds where neither run was flagged

    def figures(self) -> dict[str, float]:
        def good(xs: list[float]) -> float:
            return median(xs[i] for i in self.reliable)

        return {"ratio": median(self.ratio), "added_cpu_us": median(self.added_cpu_us), "added_p50_ms": median(self.added_p50_ms),
                "ratio_reliable": good(self.ratio), "added_cpu_us_reliable": good(self.added_cpu_us),
                "added_p50_ms_reliable": good(self.added_p50_ms), "cpu_ratio": median(self.cpu_ratio)}


def compare(base: Mapping[int, Measured], runs: Iterable[Measured]) -> Comparison:
    """`runs` against `base` (the baseline's run by round); runs of rounds without one are left out."""
    rs = [r for r in runs if r.round in base]
    return Comparison(
        ratio=[r.rps / base[r.round].rps for r in rs],
        added_cpu_us=[(r.cpu_ms - base[r.round].cpu_ms) * 1000 for r in rs],
        added_p50_ms=[r.p50_ms - base[r.round].p50_ms for r in rs],
        cpu_ratio=[base[r.round].cpu_ms / r.cpu_ms for r in rs],
        reliable=[i for i, r in enumerate(rs) if not (r.unreliable or base[r.round].unreliable)],
    )
