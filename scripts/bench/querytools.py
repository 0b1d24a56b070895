"""The measuring tools of the query benchmark (queries.py): timings with warm-up, the CLI's own
statements run on one reader, `shield` as a new process, EXPLAIN ANALYZE, a child's peak RSS."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from scripts.bench.querydata import TAIL
from scripts.bench.stats import median
from scripts.harness import rss_mib
from shield_addon import cli
from shield_addon.reader import Reader

TARGET_MS = 300.0  # a command as a new process (issue 16)
WARM_TARGET_MS = 50.0  # the same on an open reader


@dataclass
class Sizes:
    runs: int = 7  # warm runs, after one warm-up
    proc_runs: int = 5  # new processes, after one warm-up
    tail: int = TAIL  # journal events not yet in audit.duckdb
    batch: int = 1000  # events per ingest (journal.MAX_BATCH: one group commit)


SIZES = Sizes()  # --smoke makes them tiny
SMOKE = Sizes(runs=1, proc_runs=1, tail=300, batch=100)


def stats(xs: Sequence[float]) -> dict[str, float]:
    xs = sorted(xs)
    return {"median": median(xs), "p90": xs[round(0.9 * (len(xs) - 1))], "max": xs[-1]}


def timed(fn: Callable[[], Any], runs: int | None = None) -> tuple[dict[str, float], Any]:
    out = fn()  # warm-up
    xs = []
    for _ in range(runs or SIZES.runs):
        t = time.perf_counter()
        out = fn()
        xs.append((time.perf_counter() - t) * 1000)
    return stats(xs), out


def fmt_ms(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:.1f}"


EXE = str(Path(sys.executable).with_name("shield")) if Path(sys.executable).with_name("shield").exists() else "shield"


def shield(argv: Sequence[str]) -> dict[str, float]:
    """`shield ARGV` as a new process: wall time in ms, median of SIZES.proc_runs after a warm-up."""
    def once() -> None:
        p = subprocess.run([EXE, *argv], capture_output=True, text=True)
        if p.returncode:
            raise RuntimeError(f"shield {' '.join(argv)} exited {p.returncode}: {p.stderr.strip()[-500:]}")
    return timed(once, SIZES.proc_runs)[0]


def work(argv: Sequence[str]) -> Callable[[Reader], int]:
    """What `shield ARGV` asks its reader, built by the CLI's own code, without the printing:
    fn(reader) -> rows. The reader stays open between calls (warm)."""
    args = cli.build_parser().parse_args(list(argv))
    if args.cmd == "timeline":
        return lambda reader: len(reader.timeline(cli.filters_of(args), args.limit).rows)
    if args.cmd == "sql":
        return lambda reader: len(reader.query(args.query).rows)
    return lambda reader: len(reader.flow(args.flow_id).events)


def recorded(reader: Reader, fn: Callable[[Reader], Any]) -> list[tuple[str, Any]]:
    """The statements fn runs on the reader's session, in order (to EXPLAIN ANALYZE them)."""
    con = reader.con
    rec = Recorder(con)
    reader._session.con = rec  # type: ignore[union-attr]  # a benchmark looking inside, on purpose
    try:
        fn(reader)
    finally:
        reader._session.con = con  # type: ignore[union-attr]
    return rec.seen


class Recorder:
    """A connection that notes each statement run through it, to EXPLAIN ANALYZE them afterwards."""

    def __init__(self, con: duckdb.DuckDBPyConnection):
        self.con, self.seen = con, []

    def execute(self, sql: str, params: Any = None) -> duckdb.DuckDBPyConnection:
        self.seen.append((sql, params))
        return self.con.execute(sql, params)


def explain(con: duckdb.DuckDBPyConnection, sql: str, params: Any, top: int = 6) -> list[str]:
    """EXPLAIN ANALYZE, condensed to the operators that took the time (summed over threads)."""
    plan = json.loads(con.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, params).fetchall()[0][1])
    nodes: list[tuple[float, str, int, str]] = []

    def walk(node: dict[str, Any]) -> None:
        info = node.get("extra_info") or {}
        extra = " ".join(f"{k}: {info[k]}" for k in ("Table", "Type", "Filters", "Groups") if k in info)
        nodes.append((float(node.get("timing") or 0), node.get("name", "?"), int(node.get("intermediate_rows") or 0), extra))
        for child in node.get("children", []):
            walk(child)

    for root in plan.get("operator", []):
        walk(root)
    q = plan.get("query", {})
    return [f"    {sql[:150]}{' ...' if len(sql) > 150 else ''}",
            f"    total {q.get('total_time', 0) * 1000:,.1f} ms, row groups {q.get('total_row_groups_scanned')} of "
            f"{q.get('total_row_groups_to_scan')}"] + \
        [f"    {t * 1000:8,.1f} ms {rows:>12,} rows  {name:<16} {extra[:150]}" for t, name, rows, extra in
         sorted(nodes, key=lambda n: -n[0])[:top]]


def figure(results: dict[str, Any], label: str, st: dict[str, float], rows: Any = "", note: str = "") -> None:
    results["figures"].append({"figure": label, **st, "rows": rows, "note": note, "load_1min": os.getloadavg()[0]})
    print(f"  {label:<46} median {fmt_ms(st['median']):>7} ms, p90 {fmt_ms(st['p90']):>7} ms  {rows} {note}", flush=True)


def rss_bytes(pid: int) -> int:
    try:
        return int(rss_mib(pid) * 2**20)
    except ProcessLookupError:  # exited (a zombie until waited for)
        return 0


def run_measured(cmd: Sequence[str], cwd: Path, rss_limit: int = 0, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Wall time and peak RSS of one child process, its RSS sampled every 50 ms (ru_maxrss would
    include this parent's own peak: Linux carries it over the fork and exec). With rss_limit, the
    child is killed (SIGKILL, by its pid) once its RSS passes the limit."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t = time.perf_counter()
        p = subprocess.Popen(list(cmd), cwd=cwd, stdout=out, stderr=err, text=True, env=env)
        killed, peak = False, 0
        while True:
            rss = rss_bytes(p.pid)
            peak = max(peak, rss)
            pid, status = os.waitpid(p.pid, os.WNOHANG)
            if pid:
                break
            if rss_limit and not killed and rss > rss_limit:
                os.kill(p.pid, 9)
                killed = True
            time.sleep(0.05)  # the sampling period
        secs = time.perf_counter() - t
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return {"seconds": secs, "rc": p.returncode, "max_rss_bytes": peak, "killed": killed,
                "stdout": out.read()[-2000:], "stderr": err.read()[-2000:]}

