"""What a proxy benchmark prints at the end: per scenario the medians of each proxy, the
shield/bare ratios per round and their median, added CPU and latency; then the targets."""

from __future__ import annotations

import argparse
import collections
from typing import Any

from scripts.bench.load import SCENARIOS
from scripts.bench.runs import BG_LIMIT, Run
from scripts.bench.stats import compare, median


def out(*a: Any) -> None:
    print(*a, flush=True)


def summarize(runs: list[Run], args: argparse.Namespace) -> dict[str, Any]:
    out("\n== Summary (medians over rounds; ratios are shield/bare within each round) ==")
    by: dict[tuple[str, str], list[Run]] = collections.defaultdict(list)
    for r in runs:
        by[(r.proxy, r.scenario)].append(r)
    unreliable = sorted({r.round for r in runs if r.unreliable})
    if unreliable:
        out(f"  !! rounds {unreliable} had background load > {BG_LIMIT} cores, steal time or errors in some run: "
            "their figures are shown but the medians are also given without them")
    figures: dict[str, Any] = {}
    names = list(dict.fromkeys(["bare", "shield", "shield-500", *(r.proxy for r in runs)]))
    for sc in SCENARIOS:
        rows = [(n, by[(n, sc)]) for n in names if by.get((n, sc))]
        if not rows:
            continue
        table(sc, rows, args)
        bare = {r.round: r for r in by.get(("bare", sc), [])}
        for name in names[1:]:
            if [r for r in by.get((name, sc), []) if r.round in bare]:
                figures[f"{name}/{sc}"] = ratios(name, by[(name, sc)], bare, {r.round: r for r in by.get(("shield", sc), [])})
    return figures


def table(sc: str, rows: list[tuple[str, list[Run]]], args: argparse.Namespace) -> None:
    out(f"\n  {sc}  (concurrency {args.concurrency}" + (f", paced at {args.rate:.0f} req/s" if sc == "http-paced" else "") + ")")
    out(f"    {'':12} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'CPU ms/req':>11} {'peak RSS MiB':>13} {'fsync p50':>10}   "
        "CPU by thread, ms/req")
    for name, rs in rows:
        threads: dict[str, list[float]] = collections.defaultdict(list)
        for r in rs:
            for k, v in r.threads_ms.items():
                threads[k].append(v)
        tt = ", ".join(f"{k} {median(v):.3f}" for k, v in sorted(threads.items(), key=lambda kv: -median(kv[1])) if median(v) >= 0.0005)
        out(f"    {name:12} {median(r.rps for r in rs):8.0f} {median(r.p50_ms for r in rs):8.2f} "
            f"{median(r.p99_ms for r in rs):8.2f} {median(r.cpu_ms for r in rs):11.3f} "
            f"{median(r.peak_rss_mib for r in rs):13.0f} {median(r.fsync_p50_ms for r in rs):10.2f}   {tt}")


def ratios(name: str, rs: list[Run], bare: dict[int, Run], shield: dict[int, Run]) -> dict[str, float]:
    c = compare(bare, rs)
    fig = c.figures()
    note = ""
    if len(c.reliable) != len(c.ratio):
        note = f" (reliable rounds only: {fig['ratio_reliable']:.3f})" if c.reliable else " (no reliable round)"
    out(f"    {name}/bare throughput per round: {' '.join(f'{x:.3f}' for x in c.ratio)}  -> median {fig['ratio']:.3f}{note}")
    out(f"    {name}/bare CPU per request, inverted (what the throughput ratio would be if the proxy's CPU were "
        f"the only limit; robust to background load): {fig['cpu_ratio']:.3f}")
    out(f"    {name} added CPU per request (µs): {' '.join(f'{x:.0f}' for x in c.added_cpu_us)}  -> median {fig['added_cpu_us']:.0f}")
    out(f"    {name} added p50 (ms): {' '.join(f'{x:+.2f}' for x in c.added_p50_ms)}  -> median {fig['added_p50_ms']:+.2f}")
    if name.startswith("v:") and shield:
        d = compare(shield, rs).added_cpu_us
        out(f"    {name} CPU per request against shield (µs): {' '.join(f'{x:+.0f}' for x in d)}  -> median {median(d):+.0f}")
    return fig


def target_line(what: str, value: float | None, limit: float, higher_is_better: bool, unit: str, note: str = "") -> str:
    if value is None or value != value:
        return f"  {what:58} {'n/a':>10}"
    ok = value >= limit if higher_is_better else value <= limit
    gap = (value / limit - 1) * 100
    return (f"  {what:58} {value:10.3f} {unit:5} target {'>=' if higher_is_better else '<='} {limit:g}  "
            f"{'PASS' if ok else 'FAIL'} ({gap:+.0f} % of the target){note}")


def targets(figures: dict[str, Any], micro: dict[str, Any], args: argparse.Namespace) -> None:
    out("\n== Targets ==")

    def fig(key: str, k: str) -> float | None:
        return figures.get(key, {}).get(k)

    def implied(key: str) -> str:
        v = fig(key, "cpu_ratio")
        return f"   [CPU-implied {v:.3f}]" if v is not None and v == v else ""

    for proxy, limit in (("shield", 0.90), ("shield-500", 0.85)):
        for sc in ("http", "https"):
            what = f"throughput {proxy}/bare, {sc}" + (" (median of rounds)" if (proxy, sc) == ("shield", "http") else "")
            out(target_line(what, fig(f"{proxy}/{sc}", "ratio"), limit, True, "x", implied(f"{proxy}/{sc}")))
    for sc in ("http", "https"):
        out(target_line(f"added CPU per allowed request, {sc} (µs)", fig(f"shield/{sc}", "added_cpu_us"), 150, False, "µs"))
    out(target_line(f"added p50 at concurrency {args.concurrency}, saturated, http (ms)", fig("shield/http", "added_p50_ms"),
                    1.0, False, "ms"))
    out(target_line(f"added p50 at concurrency {args.concurrency}, paced {args.rate:.0f}/s, http (ms)",
                    fig("shield/http-paced", "added_p50_ms"), 1.0, False, "ms"))
    r500 = micro.get("rules", {}).get("500 generated", {}).get("median_us")
    out(target_line("rule evaluation, 500 rules, median per request (µs)", r500, 20, False, "µs"))
