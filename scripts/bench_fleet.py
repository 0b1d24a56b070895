#!/usr/bin/env python3
"""The fleet's figures (not a timed test): (a) how fast one proxy's journal ships into
PostgreSQL, and which COPY mechanism is fastest; (b) throughput of 2 proxies behind HAProxy
against 1 behind HAProxy and 1 direct, same upstream (nginx), same load generator (a process
of its own), ratios from the same run. `--smoke` runs everything tiny (it only shows the
script works: its figures mean nothing).

    scripts/python scripts/bench_fleet.py [--rows 200000] [--duration 20] [--rounds 2]
        [--concurrency 16] [--tls] [--only ship|scale] [--json FILE] [--smoke]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

CHECKOUT = str(Path(__file__).resolve().parents[1])
sys.path.insert(0, CHECKOUT)  # the checkout: `scripts` and shield_addon
# ... and the proxies it starts run this checkout's code too, not whatever is installed.
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (CHECKOUT, os.environ.get("PYTHONPATH")) if p)

import orjson  # noqa: E402
import psycopg  # noqa: E402

from scripts import haproxy, postgres  # noqa: E402
from scripts.bench import procstat  # noqa: E402
from scripts.bench.launch import Launcher  # noqa: E402
from scripts.bench.load import LoadSpec, Upstream, drive, start_nginx  # noqa: E402
from scripts.bench.runs import start_proxy  # noqa: E402
from shield_addon.core.model import AuditDir  # noqa: E402
from shield_addon.fleet import db, schema, ship  # noqa: E402
from shield_addon.journal import Journal  # noqa: E402

SHIP_TARGET = 20_000  # events/s per proxy (issue 17)
SCALE_TARGET = 1.5  # 2 proxies against 1, on 2 cores
SHIPPED = f"Shipper, {ship.BATCH_BYTES >> 20} MiB batches (as shipped)"


def out(*a: Any) -> None:
    print(*a, flush=True)


# ---------------------------------------------------------------- (a) shipping


def make_journal(audit: Path, rows: int) -> Journal:
    """A journal of `rows` realistic events (the load's first request and its response, as the
    proxy records them: headers, bodies, verdicts) written the way the writer writes them."""
    from scripts.bench.journalbench import pair_events, sample_events

    req, resp = sample_events()
    j = Journal(AuditDir(audit).journal)
    j.open(thread=False)
    for start in range(0, rows, 1000):
        j.append(pair_events(req, resp, min(1000, rows - start), tag=f"f{start}"), sync=False)
    j.sync()
    return j


def pg_cpu(pg: postgres.Postgres) -> float:
    return procstat.family_cpu(pg.proc.pid) if pg.proc else 0.0


def drop(pg: postgres.Postgres, url: str) -> None:
    with psycopg.connect(pg.url(), autocommit=True) as con:
        con.execute(f"DROP DATABASE {url.rsplit('/', 1)[1]}")  # type: ignore[arg-type] - a name we made


def timed(pg: postgres.Postgres, fn: Callable[[str], int]) -> dict[str, float]:
    """Run fn on a fresh fleet database; its wall time, events/s and the CPU on both sides."""
    url = pg.database()
    c0, p0, m0, t0 = procstat.self_cpu(), pg_cpu(pg), procstat.system_cpu()[0], time.perf_counter()
    n = fn(url)
    wall = time.perf_counter() - t0
    client, server = procstat.self_cpu() - c0, pg_cpu(pg) - p0
    others = max(0.0, (procstat.system_cpu()[0] - m0 - client - server) / wall)
    drop(pg, url)
    return {"events": n, "seconds": wall, "events_per_s": n / wall, "shipper_cpu_us": client / n * 1e6,
            "postgres_cpu_us": server / n * 1e6, "others_cores": others}


def shipper_run(audit: Path, j: Journal, batch_bytes: int) -> Callable[[str], int]:
    """The real Shipper catching up from 0, as a proxy's writer does after an outage."""

    def run(url: str) -> int:
        ship.BATCH_BYTES = batch_bytes
        s = ship.Shipper(url, AuditDir(audit), j.chain_id, lambda: j.synced[0], ship.Identity("bench", "host", "", "bench"))
        try:
            if not s.attempt() or s.shipped != j.synced[0]:
                raise SystemExit(f"shipping failed: {s.error}")
        finally:
            if s.con is not None:
                s.con.close()
        return s.shipped

    return run


_COPY = "COPY chain_rows ({}) FROM STDIN".format(", ".join(schema.SHIP_COLUMNS))
_TYPES = [typ for _, typ in schema.TYPED] + ["text"]
_STAMPS = [i for i, (_, typ) in enumerate(schema.TYPED) if typ == "timestamp"]


def plain_row(row: dict, line: str) -> tuple:
    return (*map(row.get, schema.TYPED_NAMES), line)


def binary_row(row: dict, line: str) -> tuple:
    """Binary COPY wants real timestamps, not their text."""
    values = [row.get(name) for name in schema.TYPED_NAMES]
    for i in _STAMPS:
        if values[i] is not None:
            values[i] = datetime.datetime.fromisoformat(values[i].rstrip("Z"))
    return (*values, line)


def copy_run(lines: list[bytes], build: Callable[[dict, str], tuple], set_types: bool = False,
             binary: bool = False, batch_rows: int = 5000) -> Callable[[str], int]:
    """COPY alone (no journal reading, no mark): one way of building and sending the rows."""

    def run(url: str) -> int:
        con = db.connect(url)
        db.migrate(con)
        statement = _COPY + (" (FORMAT BINARY)" if binary else "")
        for start in range(0, len(lines), batch_rows):
            with con.transaction(), con.cursor().copy(statement) as copy:  # type: ignore[arg-type]
                if set_types:
                    copy.set_types(_TYPES)
                for line in lines[start:start + batch_rows]:
                    copy.write_row(build(orjson.loads(line), line.decode()))
        n = con.execute("SELECT count(*) FROM chain_rows").fetchone()[0]  # type: ignore[index]
        con.close()
        return n

    return run


def bench_shipping(args: argparse.Namespace, work: Path, pg: postgres.Postgres, results: dict[str, Any]) -> None:
    out(f"== (a) Shipping one proxy's journal into PostgreSQL {pg_version(pg)}")
    audit = work / "ship-audit"
    t0 = time.perf_counter()
    j = make_journal(audit, args.rows)
    size = sum(p.stat().st_size for p in (audit / "journal").glob("*.jsonl"))
    out(f"  journal: {args.rows:,} events, {size / 2**20:.0f} MiB ({size // args.rows} bytes/event), "
        f"written in {time.perf_counter() - t0:.1f} s")
    lines = b"".join(p.read_bytes() for p in sorted((audit / "journal").glob("*.jsonl"))).splitlines()
    runs: dict[str, list[dict[str, float]]] = {}
    batch_bytes = ship.BATCH_BYTES
    variants: list[tuple[str, Callable[[str], int]]] = [
        (SHIPPED, shipper_run(audit, j, ship.BATCH_BYTES)),
        ("Shipper, 1 MiB batches", shipper_run(audit, j, 1 << 20)),
        ("Shipper, 8 MiB batches", shipper_run(audit, j, 8 << 20)),
        ("Shipper, 32 MiB batches", shipper_run(audit, j, 32 << 20)),
        ("COPY only: text, write_row(schema.pg_row)", copy_run(lines, schema.pg_row)),
        ("COPY only: text, write_row(plain tuple)", copy_run(lines, plain_row)),
        ("COPY only: text, plain tuple, set_types", copy_run(lines, plain_row, set_types=True)),
        ("COPY only: binary, set_types", copy_run(lines, binary_row, set_types=True, binary=True)),
    ]
    for rnd in range(args.rounds):
        for name, fn in variants:
            runs.setdefault(name, []).append(timed(pg, fn))
            r = runs[name][-1]
            out(f"  round {rnd + 1}: {name:44} {r['events_per_s']:9,.0f} events/s  ({r['seconds']:5.2f} s; CPU per event: "
                f"shipper {r['shipper_cpu_us']:5.1f} µs, PostgreSQL {r['postgres_cpu_us']:5.1f} µs; others' cores {r['others_cores']:.2f})")
    ship.BATCH_BYTES = batch_bytes
    out("  median of the rounds:")
    figures = {}
    for name, rs in runs.items():
        figures[name] = {k: statistics.median(r[k] for r in rs) for k in rs[0]}
        f = figures[name]
        out(f"    {name:44} {f['events_per_s']:9,.0f} events/s  shipper {f['shipper_cpu_us']:5.1f} µs + "
            f"PostgreSQL {f['postgres_cpu_us']:5.1f} µs CPU per event; others' cores {f['others_cores']:.2f}")
    results["shipping"] = {"rows": args.rows, "bytes_per_event": size // args.rows, "figures": figures}


def pg_version(pg: postgres.Postgres) -> str:
    with psycopg.connect(pg.url()) as con:
        return str(con.execute("SHOW server_version").fetchone()[0])  # type: ignore[index]


# ---------------------------------------------------------------- (b) scale-out behind HAProxy


def load_child(spec: dict[str, Any]) -> None:
    """The load generator's own process: warm up, say START, measure, say END, print the figures."""
    up = Upstream(None, spec["http_port"], spec["https_port"], Path(spec["cert"]), "")  # type: ignore[arg-type]

    def mark(word: str) -> Callable[[], None]:
        return lambda: print(word, flush=True)

    win = asyncio.run(drive(LoadSpec(tls=spec["tls"]), up, spec["port"], Path(spec["ca"]), spec["concurrency"],
                            spec["warmup"], spec["duration"], mark("START"), mark("END")))
    lat = sorted(win.latencies)
    print(json.dumps({"requests": len(lat), "errors": win.errors, "first_error": win.first_error,
                      "p50_ms": lat[len(lat) // 2] * 1000 if lat else 0.0,
                      "p99_ms": lat[int(len(lat) * 0.99)] * 1000 if lat else 0.0}), flush=True)


Part = tuple[str, int, bool]  # (name, pid, with its descendants)


def cpu_of(part: Part) -> float:
    _, pid, family = part
    return procstat.family_cpu(pid) if family else procstat.cpu_seconds(pid)


def proxy_parts(proxies: list[Any]) -> list[Part]:
    """The proxies' event loops (the mitmproxy process) and their audit writers (its child),
    apart: the model of N cores needs the loop's CPU per request alone."""
    return [("event loops", p.pid, False) for p in proxies] + [("writers", p.pid, True) for p in proxies]


def measure(name: str, port: int, ca: Path, up: Upstream, args: argparse.Namespace, parts: list[Part]) -> dict[str, Any]:
    """One run: the load generator (a process) through `port`; req/s and each part's cores."""
    spec = {"port": port, "ca": str(ca), "http_port": up.http_port, "https_port": up.https_port, "cert": str(up.cert),
            "tls": args.tls, "concurrency": args.concurrency, "warmup": args.warmup, "duration": args.duration}
    child = subprocess.Popen([sys.executable, __file__, "--load-child", json.dumps(spec)], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    parts = [*parts, ("load generator", child.pid, False)]

    def snap() -> dict[str, Any]:
        return {"cpu": [cpu_of(part) for part in parts], "machine": procstat.system_cpu()[0], "t": time.perf_counter()}

    snaps, figures = [], {}
    for line in child.stdout:
        if line.strip() in ("START", "END"):
            snaps.append(snap())
        elif line.startswith("{"):
            figures = json.loads(line)
    child.wait(30)
    a, b = snaps
    wall = b["t"] - a["t"]
    cpu: dict[str, float] = {}
    for (part, _, _), x, y in zip(parts, a["cpu"], b["cpu"]):
        cpu[part] = cpu.get(part, 0.0) + (y - x) / wall  # cores used by each part
    if "writers" in cpu:
        cpu["writers"] -= cpu["event loops"]  # the family's CPU, less the loop's own
    ours = sum(cpu.values())
    rps = figures["requests"] / wall
    r = {"name": name, "rps": rps, **figures, "cores": cpu, "other_cores": max(0.0, (b["machine"] - a["machine"]) / wall - ours),
         "cpu_us_per_request": {k: v / rps * 1e6 for k, v in cpu.items()} if rps else {}}
    shown = "  ".join(f"{k} {v:.2f}" for k, v in cpu.items())
    err = f"  errors {figures['errors']} ({figures['first_error']})" if figures["errors"] else ""
    out(f"    {name:20} {rps:6.0f} req/s  p50 {figures['p50_ms']:6.1f} ms  p99 {figures['p99_ms']:6.1f} ms  "
        f"cores: {shown}  others' {r['other_cores']:.2f}{err}")
    return r


def bench_scale(args: argparse.Namespace, work: Path, pg: postgres.Postgres, results: dict[str, Any]) -> None:
    out(f"== (b) Proxies behind HAProxy (TCP, round robin): {os.cpu_count()} cores, "
        f"{'https' if args.tls else 'http'}, {args.concurrency} keep-alive connections, "
        f"{args.warmup:g} s warm-up + {args.duration:g} s measured per run")
    launcher = Launcher()
    fronts: list[haproxy.HAProxy] = []
    try:
        up = start_nginx(work, launcher)
        url = pg.database()
        kind = "bare" if args.bare else "shield"
        proxies = [start_proxy(launcher, kind, work, up, None,
                               # one agent sends everything: its share of the trail (64 MiB a minute) would
                               # answer 429 after ~30 s of a saturating load
                               ["--set", f"shield_fleet={url}", "--set", f"shield_proxy_name=p{i}",
                                "--set", "shield_agent_budget=0",
                                *(x for s in args.proxy_sets for x in ("--set", s))], f"p{i}")
                   for i in (1, 2)]
        one = haproxy.start([proxies[0].port], work / "haproxy-1")
        two = haproxy.start([p.port for p in proxies], work / "haproxy-2")
        fronts += [one, two]
        base: list[Part] = [("nginx", up.proc.pid, True), ("PostgreSQL", pg.proc.pid if pg.proc else 0, True)]
        plans = [
            ("1 proxy, direct", proxies[0].port, [*proxy_parts(proxies[:1]), *base]),
            ("1 proxy, HAProxy", one.port, [*proxy_parts(proxies[:1]), ("HAProxy", one.proc.pid, False), *base]),
            ("2 proxies, HAProxy", two.port, [*proxy_parts(proxies), ("HAProxy", two.proc.pid, False), *base]),
        ]
        runs: dict[str, list[dict[str, Any]]] = {}
        for rnd in range(args.rounds):
            out(f"  -- round {rnd + 1}/{args.rounds}")
            for name, port, parts in plans:
                runs.setdefault(name, []).append(measure(name, port, proxies[0].ca, up, args, parts))
        shipped = "" if args.bare else lag(url)
        results["scale"] = {"runs": runs, "fleet_lag_after": shipped, "bare": args.bare}
        report_scale(runs, results)
        if shipped:
            out(f"  the fleet after the runs: {shipped}")
        drop_when_idle = url
    finally:
        for f in fronts:
            f.stop()
        launcher.stop_all()
    drop(pg, drop_when_idle)


def lag(url: str) -> str:
    """Each proxy's journal and shipped marks, once shipping has had a few seconds to catch up."""
    deadline = time.monotonic() + 30
    with psycopg.connect(url) as con:
        while True:
            rows = con.execute("SELECT name, journal_seq, shipped_seq FROM proxies ORDER BY name").fetchall()
            if all(j == s for _, j, s in rows) or time.monotonic() > deadline:
                return ", ".join(f"{n} journal {j:,} shipped {s:,}" for n, j, s in rows)
            time.sleep(1)


def report_scale(runs: dict[str, list[dict[str, Any]]], results: dict[str, Any]) -> None:
    med = {name: statistics.median(r["rps"] for r in rs) for name, rs in runs.items()}
    ratios = [rs2["rps"] / rs1["rps"] for rs1, rs2 in zip(runs["1 proxy, HAProxy"], runs["2 proxies, HAProxy"])]
    via = [h["rps"] / d["rps"] for d, h in zip(runs["1 proxy, direct"], runs["1 proxy, HAProxy"])]
    out("  median of the rounds: " + ", ".join(f"{name} {v:,.0f} req/s" for name, v in med.items()))
    out(f"  ratio 2 proxies / 1 proxy, both behind HAProxy: {statistics.median(ratios):.2f} "
        f"(rounds {', '.join(f'{x:.2f}' for x in ratios)}; target >= {SCALE_TARGET})")
    out(f"  ratio 1 proxy behind HAProxy / direct: {statistics.median(via):.2f} "
        f"(rounds {', '.join(f'{x:.2f}' for x in via)})")
    results["scale_summary"] = {"median_rps": med, "two_vs_one": statistics.median(ratios),
                                "haproxy_vs_direct": statistics.median(via), "model": model(runs["1 proxy, HAProxy"])}


def model(runs: list[dict[str, Any]]) -> dict[str, float]:
    """What N proxies on C idle cores can do, from one proxy's CPU per request: each event loop
    is one thread (at most one core: N / loop), and everything (loops, writers, PostgreSQL,
    HAProxy, upstream, client) shares the C cores (C / all): X = min(N / loop, C / all)."""
    per = {k: statistics.median(r["cpu_us_per_request"][k] for r in runs) for k in runs[0]["cpu_us_per_request"]}
    loop, total = per["event loops"], sum(per.values())
    def ceiling(n: int, cores: int) -> float:
        return min(n / loop, cores / total) * 1e6

    out("  model, from 1 proxy's CPU per request (µs): " + ", ".join(f"{k} {v:.0f}" for k, v in per.items()))
    out(f"    the event loop is {loop / total:.0%} of all the CPU a request costs; on C idle cores N proxies serve "
        f"min(N / {loop:.0f} µs, C / {total:.0f} µs)")
    for cores in (2, 4, 8):
        best = min(cores, max(1, round(cores * loop / total + 0.49)))
        out(f"    {cores} cores: 1 proxy {ceiling(1, cores):6,.0f} req/s; {best} proxies {ceiling(best, cores):6,.0f} req/s "
            f"({ceiling(best, cores) / ceiling(1, cores):.2f} x); the cores are full from N = {cores * loop / total:.1f}")
    return {"loop_us": loop, "total_us": total, "two_vs_one_on_2_idle_cores": ceiling(2, 2) / ceiling(1, 2)}


# ---------------------------------------------------------------- main


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=200_000, help="events in the shipped journal (default 200000)")
    ap.add_argument("--rounds", type=int, default=2, help="rounds of every measurement (default 2)")
    ap.add_argument("--duration", type=float, default=20, help="measured seconds per throughput run (default 20)")
    ap.add_argument("--warmup", type=float, default=3, help="unmeasured seconds before each run (default 3)")
    ap.add_argument("--concurrency", type=int, default=16, help="connections of the load generator (default 16)")
    ap.add_argument("--tls", action="store_true", help="HTTPS through the proxies (default: HTTP)")
    ap.add_argument("--only", choices=["ship", "scale"], help="one part only")
    ap.add_argument("--json", type=Path, help="write the figures here")
    ap.add_argument("--set", dest="proxy_sets", action="append", default=[], metavar="OPTION=VALUE",
                    help="an option for every proxy of (b), e.g. shield_ingest_interval=30 (repeatable)")
    ap.add_argument("--bare", action="store_true",
                    help="(b) with bare mitmdump as the proxies (no shield, no fleet): the ceiling of the ratio "
                         "on this machine, for mitmproxy itself")
    ap.add_argument("--smoke", action="store_true", help="everything tiny: shows the script works, measures nothing")
    ap.add_argument("--load-child", help=argparse.SUPPRESS)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.load_child:
        load_child(json.loads(args.load_child))
        return 0
    if args.smoke:
        args.rows, args.rounds, args.duration, args.warmup, args.concurrency = 2000, 1, 1.0, 0.5, 4
    pg = postgres.start()
    if pg is None:
        raise SystemExit("PostgreSQL's server is not installed (Debian: apt-get install postgresql)")
    results: dict[str, Any] = {"cores": os.cpu_count(), "load_average": os.getloadavg()[0]}
    out(f"bench_fleet: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} before the run")
    try:
        with tempfile.TemporaryDirectory(prefix="shield-bench-fleet-") as tmp:
            if args.only in (None, "ship"):
                bench_shipping(args, Path(tmp), pg, results)
            if args.only in (None, "scale"):
                bench_scale(args, Path(tmp), pg, results)
    finally:
        pg.close()
    out("== Targets")
    if "shipping" in results:
        got = results["shipping"]["figures"][SHIPPED]["events_per_s"]
        out(f"  shipping, one proxy: {got:,.0f} events/s (target >= {SHIP_TARGET:,}: {'met' if got >= SHIP_TARGET else 'NOT met'})")
    if "scale_summary" in results:
        got = results["scale_summary"]["two_vs_one"]
        out(f"  2 proxies / 1 behind HAProxy: {got:.2f} x (target >= {SCALE_TARGET}: "
            f"{'met' if got >= SCALE_TARGET else 'NOT met'})")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
