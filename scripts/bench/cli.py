"""Throughput and overhead of agent-shield against bare mitmproxy (not a timed test).

    python scripts/bench_proxy.py [--quick] [--rounds 5] [--duration 5] [--concurrency 10]
                                  [--py-spy PATH] [--nice -5] [--json OUT] [--micro-only]
                                  [--variant 'NAME=--set shield_x=y' ...] [--soak 60] [--smoke]

What it does, in one run (about 9 minutes with the defaults on 2 cores; --quick: about 2.5):

1. Starts nginx (system package, one worker, `return 200` with a small JSON body) on two free
   loopback ports, HTTP and HTTPS (a self-signed certificate made here), and measures the load
   generator against it directly: the ceiling of client + upstream, printed first.
2. Rounds (default 5); in each, one process after the other is started, loaded and stopped
   (the order is reversed every other round so drift cancels out):
     bare        `mitmdump -q`: mitmproxy alone, the ceiling
     shield      `shield run --headless -q` with the bundled rules and the full audit store
                 (journal with fsync'd group commit, DuckDB ingest every second, signed checkpoints)
     shield-500  the same with the bundled rules plus 500 generated rules (hosts, path regexes with
                 named groups, methods, SQL and Kubernetes matchers, headers, queries, JSON, filters)
   each on a free loopback port, with a temporary confdir (shared: one CA), trusting the upstream's
   certificate through `ssl_verify_upstream_trusted_ca` (both alike). shield gets `-q` too, so
   neither proxy prints a line per flow (--shield-arg adds arguments), and a copy of the bundled
   rules (an edit of the checkout cannot reload them mid-run).
   Scenarios, against each proxy: `http` and `https` (CONNECT, then TLS to the proxy's
   certificate) at fixed concurrency, keep-alive, a mix of 8 small allowed GETs with an
   Authorization header; `http-body`: the same with every 10th request a POST of a 256 KiB JSON
   document; `http-paced`: a fixed request rate (--rate) on the same connections, for latency
   without queueing. Each run: --warmup seconds unmeasured, then --duration seconds measured.
   Every request is checked to be allowed by both rule sets before the first run, and after each
   shield process the journal must hold one allowed `request` event per request sent.
3. Per run: requests/s, p50/p99 latency, CPU ms per request of the proxy process (user+system
   time of all its threads and of its audit writer process, via psutil; each thread and the
   writer are listed), peak RSS of both together (sampled every 0.25 s during the run),
   and the background: CPU used on the machine by anything but the proxy, nginx and this client.
   A run with more than 0.15 cores of background (or steal time, or errors) is flagged
   UNRELIABLE and the medians are also given without its round.
4. Summary: per scenario the medians, shield/bare ratios per round and their median, added CPU
   per request and added p50, then the targets of the issue with pass/fail.
5. Micro-figures, in this process, in CPU time: rule evaluation with 10/100/500 generated rules
   (and the bundled set, and bundled+500); action parsing per parser; the cost of each step the
   proxy runs per request (its own functions, called through scripts/bench/pipeline.py, on
   mitmproxy test flows); journal commits/s with the chain and checkpoints on (the Journal alone,
   and through the audit writer process as the proxy uses it); DuckDB ingest rows/s and the cost
   of one ingest batch.
   Calibration: bare against mitmdump with scripts/bench_null_addon.py, a do-nothing addon with
   shield's hooks, and one whose request hook also waits for another thread (like the journal).
   Every run also times a 1 KB append + fdatasync every 20 ms next to the audit dir ("fsync"):
   a busy disk makes every group commit, and so every shield request, wait.
6. With py-spy (--py-spy PATH, or on PATH; `pip install py-spy`): bare and shield once more,
   sampled by `py-spy record --nonblocking` during the measured window; each thread's CPU is
   split by its share of samples: per shield hook, mitmproxy, asyncio, the journal writer, ingest.

--variant NAME=ARGS adds, in every round, a shield process with more `shield run` arguments (an
ablation: e.g. 'ingest5=--set shield_ingest_interval=5'), compared with bare and with shield.
--soak N runs one shield process for N seconds in 10 s slices (cost drift as the journal grows).
--smoke runs every part once, tiny (1 round of 0.3 s, bare and shield, calibration, a 1 s soak,
micro-figures of a few ms each; a few seconds in all): it checks the tools work, its figures
mean nothing. The tests run it (tests/scripts/).

The machine should be otherwise idle. On a shared one, --nice -5 (as root) raises the priority of
this run's processes (and of its scheduler autogroup). Everything lives in one temporary
directory, removed at the end unless --keep. The proxies run with this Python
(`python -m shield_addon.cli`, and the `mitmdump` beside it).

The code is the package scripts/bench/ (one module per tool: proxy, micro, profile, ...; see
its __init__); this file's main() is what scripts/bench_proxy.py runs, also
`python -m scripts.bench.cli` at the root of the checkout.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import hashlib
import json
import os
import platform
import shutil
import ssl
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

from mitmproxy import version as mitm_version

import shield_addon
from scripts.bench import micro, pipeline, procstat
from scripts.bench.launch import Launcher
from scripts.bench.load import BODY_SIZE, PATHS, SCENARIOS, UPSTREAM_BODY, Upstream, request_bytes, start_nginx
from scripts.bench.micro_report import micro_figures
from scripts.bench.profile import profile_run
from scripts.bench.proxy import NCPU, calibration, ceiling, plans, run_rounds, soak, warn
from scripts.bench.rulegen import make_rules_dir
from scripts.bench.runs import FsyncProbe
from scripts.bench.summary import summarize, targets
from scripts.bench.testflows import check_allowed
from shield_addon import __version__ as shield_version


def out(*a: Any) -> None:
    print(*a, flush=True)


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="bench_proxy.py", description=__doc__.split("\n\n")[0],
                                 epilog="The whole story: the module's docstring (scripts/bench/cli.py).")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    ap.add_argument("--duration", type=float, default=5.0, help="measured seconds per run (default 5; paced runs: at most 3)")
    ap.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds before each run (default 1)")
    ap.add_argument("--concurrency", type=int, default=10, help="connections of the load generator (default 10)")
    ap.add_argument("--rate", type=float, default=200.0, help="requests/s of the paced run (default 200)")
    ap.add_argument("--scenarios", default=",".join(SCENARIOS), help=f"comma-separated subset of {','.join(SCENARIOS)}")
    ap.add_argument("--quick", action="store_true", help="2 rounds of 2 s, short micro-figures, no profile")
    ap.add_argument("--smoke", action="store_true",
                    help="every part once and tiny (a few seconds): checks that the tools work; the figures mean nothing")
    ap.add_argument("--no-micro", action="store_true", help="skip the in-process micro-figures")
    ap.add_argument("--no-calibration", action="store_true", help="skip the null-addon calibration runs")
    ap.add_argument("--calibration-rounds", type=int, default=2, help="rounds of the calibration (default 2)")
    ap.add_argument("--variant", action="append", default=[], metavar="NAME=ARGS",
                    help="also run shield with these extra arguments in every round, e.g. "
                         "'ingest5=--set shield_ingest_interval=5' (repeatable)")
    ap.add_argument("--variant-scenarios", default="http", help="scenarios of the variants (default http)")
    ap.add_argument("--soak", type=float, default=0.0, help="also one long shield http run of this many seconds, in 10 s slices")
    ap.add_argument("--micro-only", action="store_true", help="only the in-process micro-figures (no proxy, no nginx)")
    ap.add_argument("--py-spy", default=shutil.which("py-spy"), help="py-spy binary for the profile (default: on PATH)")
    ap.add_argument("--no-profile", action="store_true", help="skip the py-spy profile run")
    ap.add_argument("--shield-arg", action="append", default=[], help="extra argument for `shield run` (repeatable)")
    ap.add_argument("--nice", type=int, default=0,
                    help="run the proxies, nginx and this client at this nice value (e.g. -10 as root on a shared machine)")
    ap.add_argument("--json", help="write every figure to this file")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    return ap


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The flags, with --quick and --smoke applied, and the sizes of the in-process figures."""
    args = parser().parse_args(argv)
    args.soak_slice, args.budget, args.check_budget, args.check_rules = 10.0, 0.6, 0.01, None
    args.journal_burst, args.journal_seconds, args.journal_small = 20000, 3.0, 1000
    if args.quick:
        args.rounds, args.duration, args.warmup = min(args.rounds, 2), min(args.duration, 2.0), min(args.warmup, 0.5)
        args.calibration_rounds = min(args.calibration_rounds, 1)
        args.no_profile = True
        args.budget, args.check_budget, args.journal_burst, args.journal_seconds = 0.15, 0.004, 4000, 1.0
    if args.smoke:
        args.rounds, args.duration, args.warmup, args.calibration_rounds = 1, 0.3, 0.2, 1
        args.scenarios = "http"
        args.soak, args.soak_slice = args.soak and 1.0, 0.5
        args.budget, args.check_budget, args.check_rules = 0.005, 0.0002, 20
        micro.MIN_BATCHES = 1
        args.journal_burst, args.journal_seconds, args.journal_small = 200, 0.1, 50
    return args


def code_fingerprint() -> str:
    """SHA-256 of the addon's sources and bundled rules, and the newest file's time: the checkout
    moves while people work, so the figures say which state they measured."""
    root = Path(shield_addon.__file__).resolve().parent
    files = sorted([*root.rglob("*.py"), *pipeline.bundled_rules().glob("*.yaml")])
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode() + b"\0" + f.read_bytes())
    newest = max(files, key=lambda f: f.stat().st_mtime)
    stamp = datetime.datetime.fromtimestamp(newest.stat().st_mtime, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"shield_addon + rules sha256 {h.hexdigest()[:16]} ({len(files)} files, newest {newest.name} {stamp})"


def header(args: argparse.Namespace, work: Path, py_spy: str | None) -> None:
    out("== agent-shield proxy benchmark ==" + ("  (--smoke: checks the tools work; the figures mean nothing)" if args.smoke else ""))
    out(f"  Python {platform.python_version()} ({sys.executable}), mitmproxy {mitm_version.VERSION}, agent-shield {shield_version}, "
        f"{ssl.OPENSSL_VERSION}")
    cpu_model = "?"
    try:
        with open("/proc/cpuinfo") as fh:
            cpu_model = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), "?")
    except OSError:
        pass
    la = procstat.loadavg()
    out(f"  {platform.system()} {platform.release()}, {NCPU} CPUs ({cpu_model}), load average {la:.2f}; "
        f"work dir {work} on {procstat.fs_type(work)}")
    out(f"  code measured: {code_fingerprint()}")
    out(f"  rounds {args.rounds}, {args.warmup:g} s warm-up + {args.duration:g} s measured per run, concurrency {args.concurrency}, "
        f"keep-alive; py-spy: {py_spy or 'not found'}" + (f"; proxies, nginx and client at nice {args.nice}" if args.nice else ""))
    if la > 0.75 * NCPU:
        warn(f"the machine is busy before we start (load average {la:.2f} on {NCPU} CPUs): figures will be noisy")


def proxy_benchmark(launcher: Launcher, args: argparse.Namespace, work: Path, py_spy: str | None, results: dict[str, Any]) -> None:
    up = start_nginx(work, launcher)
    out(f"  upstream: nginx {up.version}, 1 worker, http 127.0.0.1:{up.http_port}, https 127.0.0.1:{up.https_port}, "
        f"{len(UPSTREAM_BODY)} B JSON answer")
    rules500, bundled = make_rules_dir(work, 500), make_rules_dir(work, 0)
    check_rules(up, rules500, bundled)
    ceiling(args, up)
    if args.soak:
        results["soak"] = soak(launcher, args, work, up, bundled, py_spy)
    todo = plans(args, bundled, rules500)
    if args.smoke:  # the 500 rules are exercised by the micro-figures
        todo = [p for p in todo if p.name != "shield-500"]
    runs = run_rounds(launcher, args, work, up, todo, py_spy)
    results["runs"] = [{k: v for k, v in r.__dict__.items() if k != "tids"} for r in runs]
    results["figures"] = summarize(runs, args)
    if not args.no_calibration:
        results["calibration"] = calibration(launcher, args, work, up)
    if not args.no_micro:
        gc.collect()
        results["micro"] = micro_figures(args, work, rules500)
    targets(results["figures"], results.get("micro", {}), args)
    if py_spy and not args.no_profile:
        results["profile"] = profile_run(launcher, args, work, up, py_spy, bundled)
    elif not args.no_profile:
        out("\n(no py-spy: `pip install py-spy` and pass --py-spy PATH for the profile)")


def check_rules(up: Upstream, rules500: Path, bundled: Path) -> None:
    sets = {"bundled rules": pipeline.load_rules(bundled), "bundled + 500": pipeline.load_rules(rules500)}
    check_allowed(sets, up.http_port)
    n500 = len(sets["bundled + 500"].rules)
    out(f"  rules: bundled {len(sets['bundled rules'].rules)}; the 500 set is the bundled ones + 500 generated = {n500} "
        f"(in {rules500}); every request of the load is allowed by both (checked)")
    out(f"  load: {len(PATHS)} GET paths, ~{len(request_bytes('127.0.0.1', up.http_port, True, 1))} B requests "
        f"with an Authorization header; http-body: every 10th request a {BODY_SIZE // 1024} KiB JSON POST")


def main(argv: list[str] | None = None) -> int:
    threading.current_thread().name = "bench"
    args = parse_args(argv)
    py_spy = args.py_spy if args.py_spy and os.path.exists(args.py_spy) else None
    launcher = Launcher(args.nice)
    autogroup_nice = launcher.renice_self()
    work = Path(tempfile.mkdtemp(prefix="shield-bench-"))
    FsyncProbe.dir = work
    header(args, work, py_spy)
    results: dict[str, Any] = {"env": {"python": platform.python_version(), "mitmproxy": mitm_version.VERSION, "cpus": NCPU}}
    try:
        if args.micro_only:
            results["micro"] = micro_figures(args, work, make_rules_dir(work, 500))
        else:
            proxy_benchmark(launcher, args, work, py_spy, results)
    finally:
        launcher.stop_all()
        launcher.restore_group(autogroup_nice)
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=1, default=str))
        if args.keep:
            out(f"\nkept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
