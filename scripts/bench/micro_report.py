"""The in-process figures (micro.py, journalbench.py), printed as bench_proxy shows them."""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path
from typing import Any

from scripts.bench import pipeline, procstat
from scripts.bench.journalbench import bench_journal, bench_writer
from scripts.bench.micro import bench_parse_total, bench_parsers, bench_rules, gate_steps, index_potential, rule_cost_by_check
from scripts.bench.rulegen import generated_rules
from scripts.bench.testflows import body_flow, load_flows, realistic_flows, subject_of


def out(*a: Any) -> None:
    print(*a, flush=True)


def micro_figures(args: argparse.Namespace, work: Path, rules500: Path) -> dict[str, Any]:
    """args.budget: seconds of timing per figure; args.check_budget, args.check_rules, args.journal_burst,
    args.journal_seconds, args.journal_small: the sizes of the slower figures."""
    bundled = pipeline.load_rules(pipeline.bundled_rules())
    # parsed from text, so whatever the rule loader builds (an index, ...) is there; the first n
    # rules of generated_rules(500) are generated_rules(n)
    sets = {f"{n} generated": pipeline.parse_rules(generated_rules(n)) for n in (10, 100, 500)}
    sets["bundled"] = bundled
    sets["bundled + 500 generated"] = pipeline.load_rules(rules500)
    res: dict[str, Any] = {"rules": rule_figures(sets, args)}
    res.update(parser_figures(bundled, args.budget))
    res["steps"] = step_figures(bundled, sets["bundled + 500 generated"], args.budget)
    out(f"\n== Journal and DuckDB ingest (chain hashing and signed checkpoints on; audit dir on {procstat.fs_type(work)}) ==")
    res["journal"] = journal_figures(work, args)
    return res


def rule_figures(sets: dict[str, pipeline.RuleSet], args: argparse.Namespace) -> dict[str, Any]:
    out("\n== Rule evaluation per request (median over the realistic mix of 17 allowed requests; max = the slowest request) ==")
    res = bench_rules(sets, args.budget * 2)
    for name, v in res.items():
        out(f"  {name:26} {v['rules']:4d} rules  median {v['median_us']:8.1f} µs  max {v['max_us']:8.1f} µs  "
            f"({v['per_rule_ns']:.0f} ns per rule)")
    out("  the 500 generated rules by their first check (path is always checked first), rejecting allowed requests:")
    for k, n, ns, share in rule_cost_by_check(sets["500 generated"], args.check_budget, args.check_rules):
        out(f"    {k:12} {n:4d} rules  {ns:6.0f} ns per rule  {100 * share:5.1f} % of the time")
    big = sets["bundled + 500 generated"]
    med, mx = index_potential(big)
    out(f"  a perfect index on method/host/service would leave {med:.0f} (max {mx}) of {len(big.rules)} rules to evaluate "
        "per request of the mix")
    if getattr(big, "index", None) is not None:
        got = [len(big.index.candidates(s.request.method, s.request.host, s.action))
               for s in (subject_of(f, big) for _, f in realistic_flows())]
        out(f"  the rule set's index leaves {statistics.median(got):.0f} (max {max(got)}) candidates")
    else:
        out("  (this checkout's RuleSet has no index: evaluate() tries every rule)")
    return res


def parser_figures(bundled: pipeline.RuleSet, budget: float) -> dict[str, Any]:
    out("\n== Action parsing per request, per parser (µs, median; the JSON decode cache is cleared before each call) ==")
    out(f"  {'parser':12} {'its own request':>16} {'declining a GET':>16} {'declining a 256 KiB JSON POST':>30}")
    parsers = bench_parsers(budget / 2)
    for name, own, plain, heavy in parsers:
        out(f"  {name:12} {own:16.1f} {plain:16.2f} {heavy:30.1f}")
    t_plain, t_real, t_heavy = bench_parse_total(bundled, budget)
    out(f"  every parser and override reading (actions.readings), bundled pins: load GET {t_plain:.1f} µs, realistic mix "
        f"median {t_real:.1f} µs (target <= 50), 256 KiB JSON POST {t_heavy:.0f} µs (target <= 2000)")
    return {"parsers": parsers, "parse_total": {"plain_get": t_plain, "realistic": t_real, "body_post": t_heavy}}


def step_figures(bundled: pipeline.RuleSet, big: pipeline.RuleSet, budget: float) -> dict[str, Any]:
    out("\n== The proxy's work per allowed request, step by step (its own functions on mitmproxy test flows; µs, median) ==")
    redactor = pipeline.redactor(bundled)
    res = {}
    for label, f, rs in (("GET, bundled rules", load_flows()[0], bundled), ("GET, bundled + 500", load_flows()[0], big),
                         ("256 KiB JSON POST, bundled", body_flow(), bundled)):
        steps = gate_steps(f, rs, redactor, budget / 6)
        res[label] = steps
        total = sum(t for name, t in steps if name[0] not in " =" and t == t)
        out(f"  {label}: total {total:.0f} µs")
        for name, t in steps:
            out(f"    {name:52} {t:9.1f}")
    return res


def journal_figures(work: Path, args: argparse.Namespace) -> dict[str, float]:
    j = bench_journal(work, args.journal_burst, args.journal_seconds, args.journal_small)
    out(f"  fdatasync of a 1.2 KB append: median {j['fdatasync_ms']:.2f} ms")
    out(f"  burst (all queued at once): {j['burst_events_s']:8.0f} events/s committed, {j['burst_cpu_us']:.0f} µs CPU per event")
    out(f"  10 flows (await request event, response event not awaited): {j['c10_flows_s']:.0f} flows/s = "
        f"{j['c10_events_s']:.0f} events/s, mean batch {j['c10_mean_batch']:.1f} events, "
        f"{j['c10_cpu_us_per_event']:.0f} µs CPU per event")
    w = bench_writer(work, args.journal_burst, args.journal_seconds)
    j.update(w)
    out(f"  through the writer process (WriterLink, as the proxy): burst {w['w_burst_events_s']:8.0f} events/s, "
        f"{w['w_burst_loop_us']:.1f} µs loop CPU + {w['w_burst_writer_us']:.0f} µs writer CPU per event")
    out(f"    10 flows: {w['w_c10_flows_s']:.0f} flows/s = {w['w_c10_events_s']:.0f} events/s, {w['w_c10_loop_us']:.1f} µs loop CPU "
        f"+ {w['w_c10_writer_us']:.0f} µs writer CPU (with its ingest) per event")
    out(f"  DuckDB ingest of {j['ingest_rows']} rows: {j['ingest_rows_s']:.0f} rows/s, {j['ingest_cpu_us_per_row']:.1f} µs CPU per row")
    for tag in ("small", "big"):
        out(f"  one ingest batch, the current segment holding ~{j[f'segment_{tag}_rows']} rows ({j[f'segment_{tag}_mib']:.1f} MiB): "
            f"2 new rows {j[f'batch_2_{tag}_wall_ms']:.0f} ms wall / {j[f'batch_2_{tag}_cpu_ms']:.0f} ms CPU, "
            f"1000 new rows {j[f'batch_1000_{tag}_wall_ms']:.0f} ms wall / {j[f'batch_1000_{tag}_cpu_ms']:.0f} ms CPU")
    return j
