"""The proxy benchmark's runs: rounds of bare mitmdump, shield and shield-500 (and variants)
under the same load, each process started, loaded and stopped in turn, the order reversed every
other round so drift cancels out; the ceiling (the client straight to nginx); the calibration
(mitmdump with a do-nothing addon that has shield's hooks); a soak of one shield process in
slices (does the cost per request drift as the journal grows?)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scripts.bench import procstat
from scripts.bench.launch import Launcher
from scripts.bench.load import SCENARIOS, LoadSpec, Upstream
from scripts.bench.runs import BG_LIMIT, Proxy, Run, fmt_run, journal_summary, label_threads, measure, name_threads, start_proxy
from scripts.bench.stats import compare
from scripts.harness import stop_process
from shield_addon.core.model import AuditDir
from shield_addon.journal import segments

NCPU = procstat.psutil.cpu_count() or 1


def out(*a: Any) -> None:
    print(*a, flush=True)


def warn(text: str) -> None:
    out(f"  !! {text}")


@dataclass
class ProcPlan:
    name: str
    kind: str
    rules: Path | None
    scenarios: list[str]
    extra: list[str] = field(default_factory=list)  # more `shield run` arguments (variants)


def plans(args: argparse.Namespace, bundled: Path, rules500: Path) -> list[ProcPlan]:
    wanted = args.scenarios.split(",")
    res = [
        ProcPlan("bare", "bare", None, [s for s in SCENARIOS if s in wanted]),
        ProcPlan("shield", "shield", bundled, [s for s in SCENARIOS if s in wanted]),
        ProcPlan("shield-500", "shield", rules500, [s for s in ("http", "https") if s in wanted]),
    ]
    for v in args.variant:
        name, _, argstr = v.partition("=")
        res.append(ProcPlan(f"v:{name}", "shield", bundled, [s for s in args.variant_scenarios.split(",") if s in SCENARIOS],
                            argstr.split()))
    return res


def run_rounds(launcher: Launcher, args: argparse.Namespace, work: Path, up: Upstream, todo: list[ProcPlan],
               py_spy: str | None) -> list[Run]:
    runs: list[Run] = []
    for rnd in range(1, args.rounds + 1):
        bg = procstat.background_cores(0.5)
        la = procstat.loadavg()
        note = "  (busy machine: the round may be unreliable)" if bg > BG_LIMIT or la > 0.75 * NCPU and rnd == 1 else ""
        out(f"\n-- round {rnd}/{args.rounds}: load average {la:.2f}, background before the round {bg:.2f} cores{note}")
        for plan in todo if rnd % 2 else list(reversed(todo)):
            runs += run_plan(launcher, args, work, up, plan, rnd, py_spy)
    return runs


def run_plan(launcher: Launcher, args: argparse.Namespace, work: Path, up: Upstream, plan: ProcPlan, rnd: int,
             py_spy: str | None) -> list[Run]:
    """One process: started, loaded with each of its scenarios, stopped, its journal checked."""
    p = start_proxy(launcher, plan.kind, work, up, plan.rules, [*args.shield_arg, *plan.extra], f"r{rnd}-{plan.name.replace(':', '-')}")
    name_threads(p, py_spy)
    got = []
    for sc in plan.scenarios:
        dur = min(args.duration, 3.0) if sc == "http-paced" else args.duration
        r = measure(plan.name, sc, rnd, SCENARIOS[sc](args.rate), up, p, args, dur)
        got.append(r)
        out(fmt_run(r))
    name_threads(p, py_spy)  # threads started late (the executor) get their names too
    for r in got:
        label_threads(r, p)
    stop_process(p.proc)
    check_trail(p)
    errors = [ln for ln in p.log.read_text(errors="replace").splitlines() if "Traceback" in ln or " error" in ln.lower()]
    if errors:
        warn(f"{plan.name} log: {errors[:3]}")
    return got


def check_trail(p: Proxy) -> bool:
    """After a shield process: one allowed `request` event per request it was sent."""
    if p.audit_dir is None:
        return True
    s = journal_summary(p.audit_dir)
    bad = {k: v for k, v in s["decisions"].items() if k != "allowed"}
    ok = s["stages"].get("request", 0) == p.sent and not bad
    out(f"    {'':10} journal: {s['rows']} rows {s['stages']}, request decisions {s['decisions']}, "
        f"{s['checkpoints']} checkpoints, {s['ingested']} rows in audit.duckdb; client sent {p.sent}"
        + ("" if ok else "   <-- MISMATCH"))
    return ok


def calibration(launcher: Launcher, args: argparse.Namespace, work: Path, up: Upstream) -> dict[str, Any]:
    """bare mitmdump against mitmdump with a do-nothing addon that has shield's hooks (null-hooks),
    one whose request hook also waits for another thread (null-thread, the journal thread of
    old), and one that waits for shield's audit writer process to fsync a tiny event
    (null-writer: the mechanism of "durable before forwarded" alone)."""
    out("\n== Calibration: what mitmproxy charges for an addon with shield's hooks, before any work (http) ==")
    runs: list[Run] = []
    kinds = ("bare", "null-hooks", "null-thread", "null-writer")
    for rnd in range(1, args.calibration_rounds + 1):
        for kind in kinds if rnd % 2 else tuple(reversed(kinds)):
            p = start_proxy(launcher, kind, work, up, None, [], f"cal{rnd}-{kind}")
            r = measure(kind, "http", rnd, LoadSpec(tls=False), up, p, args, args.duration)
            stop_process(p.proc)
            out(fmt_run(r))
            runs.append(r)
    res = {}
    bare = {r.round: r for r in runs if r.proxy == "bare"}
    for kind in kinds[1:]:
        fig = compare(bare, [r for r in runs if r.proxy == kind]).figures()
        res[kind] = {"ratio": fig["ratio"], "added_cpu_us": fig["added_cpu_us"]}
        out(f"    {kind:12} throughput {fig['ratio']:.3f} x bare, added CPU {fig['added_cpu_us']:+.0f} µs per request "
            "(median of rounds)")
    return res


def soak(launcher: Launcher, args: argparse.Namespace, work: Path, up: Upstream, rules_dir: Path, py_spy: str | None
         ) -> list[dict[str, Any]]:
    """One shield process under the http load for --soak seconds, in slices: does the cost per
    request drift as the journal segment grows (the ingester re-reads the current segment)?"""
    out(f"\n== Soak: shield (bundled rules), http, {args.soak:.0f} s in {args.soak_slice:g} s slices ==")
    p = start_proxy(launcher, "shield", work, up, rules_dir, args.shield_arg, "soak")
    name_threads(p, py_spy)
    warmup, args.warmup = args.warmup, 0.0
    res = []
    try:
        for i in range(max(1, int(args.soak // args.soak_slice))):
            r = measure("shield", f"soak{i + 1}", 0, LoadSpec(tls=False), up, p, args, args.soak_slice)
            label_threads(r, p)
            assert p.audit_dir is not None
            mib = sum(f.stat().st_size for _, f in segments(AuditDir(p.audit_dir).journal)) / 2**20
            tt = ", ".join(f"{k} {v:.3f}" for k, v in r.threads_ms.items())
            out(f"{fmt_run(r)}\n      journal {mib:6.1f} MiB; CPU by thread, ms/req: {tt}")
            res.append({"slice": i + 1, "rps": r.rps, "cpu_ms": r.cpu_ms, "journal_mib": mib, "threads_ms": r.threads_ms})
    finally:
        args.warmup = warmup
        stop_process(p.proc)
    return res


def ceiling(args: argparse.Namespace, up: Upstream) -> None:
    out("\n== Ceiling: this client straight to nginx (no proxy) ==")
    for sc in ("http", "https", "http-body"):
        if sc not in args.scenarios.split(","):
            continue
        r = measure("direct", sc, 0, SCENARIOS[sc](args.rate), up, None, args, min(args.duration, 3.0))
        out(f"    {sc:10} {r.rps:8.0f} req/s  p50 {r.p50_ms:6.2f} ms  client CPU {r.client_us:5.0f} µs/req  "
            f"nginx CPU {r.upstream_us:5.0f} µs/req  errors {r.errors}")
